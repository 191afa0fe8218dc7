"""Supermasks (Zhou et al. 2019; Ramanujan et al. 2020): masks that alone make random weights work.

:func:`mask_accuracy` evaluates a ticket's mask on its random initialisation without any training.
:class:`ScoredMask` learns a mask on frozen weights: a parametrization (``torch.nn.utils.parametrize``)
that computes ``weight * mask(scores)``, with per-weight scores trained by a straight-through
estimator. ``edge_popup`` (Ramanujan et al.) keeps the top-k scores of the layer (k = density x
size) and passes the gradient straight to |scores| (Ramanujan et al. rank by |s|); ``bernoulli``
(Zhou et al.) samples m ~ Bernoulli(sigmoid(s)) while training, the gradient passing through sigmoid(s), and evaluates
the top-k of sigmoid(s) at the target density. The weights themselves are never written.

:func:`supermask_weights` draws the frozen weights. With the model's own init (PyTorch's default
std 1/sqrt(3 fan_in)) a mask keeping a fraction d of the weights shrinks each layer's output by
sqrt(d): the logits of a 3-layer net at d = 0.1 are ~0.01 and the scores' gradients vanish, so the
mask never leaves chance. Both papers therefore rescale: Ramanujan et al.'s "signed Kaiming
constant" (+-sqrt(2 / (d fan_in)), their best) and scaled Kaiming normal, which Zhou et al.'s
signed-constant supermasks resemble.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from ._common import Batch, check_density
from .masking import apply_masks

ALGORITHMS = ("edge_popup", "bernoulli")
WEIGHT_INITS = ("signed_constant", "kaiming_normal", "model")


def supermask_weights(weight: torch.Tensor, density: float, init: str,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Frozen weights for a supermask of ``density``: Kaiming std sqrt(2 / (density x fan_in)).

    ``signed_constant``: random signs times that std; ``kaiming_normal``: normal with that std;
    ``model``: ``weight`` itself, unchanged (the model's own init, unscaled).
    """
    if init not in WEIGHT_INITS:
        raise ValueError(f"supermask weight init {init!r} is unknown; allowed: {', '.join(WEIGHT_INITS)}")
    if init == "model":
        return weight.detach().clone()
    density = check_density(density)
    std = math.sqrt(2.0 / (density * max(1, weight[0].numel())))
    normal = torch.randn(weight.shape, generator=generator, dtype=torch.float32)
    drawn = normal.sign() * std if init == "signed_constant" else normal * std
    return drawn.to(weight.device, weight.dtype)


@torch.no_grad()
def mask_accuracy(model: nn.Module, masks: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
                  batches: Iterable[Batch]) -> float:
    """Accuracy on ``batches`` of a copy of ``model`` holding ``state`` (e.g. its init) under ``masks``, untrained."""
    work = copy.deepcopy(model)
    work.load_state_dict(dict(state))
    apply_masks(work, masks)
    work.eval()
    correct = seen = 0
    device = next(work.parameters()).device
    for x, y in batches:
        out = work(x.to(device))
        correct += int((out.argmax(1) == y.to(device)).sum())
        seen += int(y.shape[0])
    if seen == 0:
        raise ValueError("mask_accuracy: batches yielded no examples")
    return correct / seen


def topk_layer_mask(scores: torch.Tensor, density: float) -> torch.Tensor:
    """Float 0/1 mask of the ``max(1, round(density * size))`` highest scores of a layer."""
    k = max(1, round(density * scores.numel()))
    flat = torch.zeros(scores.numel(), dtype=scores.dtype, device=scores.device)
    flat[scores.detach().reshape(-1).topk(k).indices] = 1.0
    return flat.reshape(scores.shape)


class ScoredMask(nn.Module):
    """Parametrization ``weight -> weight * mask(scores)`` with trainable scores and a fixed density."""

    def __init__(self, weight: torch.Tensor, density: float, algorithm: str = "edge_popup",
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if algorithm not in ALGORITHMS:
            raise ValueError(f"supermask algorithm {algorithm!r} is unknown; allowed: {', '.join(ALGORITHMS)}")
        self.density, self.algorithm = check_density(density), algorithm
        noise = torch.rand(weight.shape, generator=generator, dtype=torch.float32).to(weight.device, weight.dtype)
        if algorithm == "edge_popup":  # Ramanujan et al.: Kaiming-uniform scores, ranked by |s|
            bound = 1.0 / math.sqrt(max(1, weight[0].numel()))
            start = (2 * noise - 1) * bound
        else:  # sigmoid(s) starts around the target density, with a little spread to break ties
            logit = math.log(self.density / (1 - self.density)) if self.density < 1 else 4.0
            start = logit + (noise - 0.5) * 0.1
        self.scores = nn.Parameter(start)

    def mask(self) -> torch.Tensor:
        """The mask used now: sampled (bernoulli, training) or top-k, with straight-through gradients."""
        s = self.scores
        if self.algorithm == "edge_popup":  # ranked by |s|: the straight-through gradient passes through |.|
            a = s.abs()
            return topk_layer_mask(a, self.density) + (a - a.detach())  # exactly 0/1 forward
        p = torch.sigmoid(s)
        hard = torch.bernoulli(p.detach()) if self.training else topk_layer_mask(p, self.density)
        return hard + (p - p.detach())

    def hard_mask(self) -> torch.Tensor:
        """The evaluation mask as bools (top-k at the target density)."""
        ranking = self.scores.abs() if self.algorithm == "edge_popup" else self.scores
        return topk_layer_mask(ranking, self.density).bool()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask()
