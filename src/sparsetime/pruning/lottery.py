"""The math of iterative magnitude pruning / lottery tickets (Frankle & Carbin 2019).

``snapshot`` and ``rewind`` save and restore the full model state (BatchNorm running statistics
included); ``prune_level`` removes a fraction p of the still-active weights by magnitude;
``lth_density`` is the density after L levels, (1 - p)^L, and ``lth_levels`` the fewest levels
that reach a density. ``random_reinit`` and ``random_masks`` build the two standard controls (same
mask with fresh weights; same per-layer counts at random positions). The experiment that chains
them, every level a resumable run, is ``sparsetime lth`` (:mod:`sparsetime.experiments.lottery`).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from ._common import (Masks, check_density, check_fraction, check_int, check_masks, check_scope,
                      make_generator, parameters_by_name, selected_names)
from .masking import apply_masks, check_collapse, full_masks, layer_topk_masks, masked_scores, topk_masks

logger = logging.getLogger(__name__)


def lth_density(level: int, fraction: float = 0.2) -> float:
    """Density after ``level`` pruning levels that each remove ``fraction`` of the active weights."""
    check_int(level, "level", minimum=0)
    return (1.0 - check_fraction(fraction)) ** level


def lth_levels(density: float, fraction: float = 0.2) -> int:
    """Fewest levels whose density (1 - p)^L is at or below ``density``."""
    d, p = check_density(density), check_fraction(fraction)
    return max(0, math.ceil(math.log(d) / math.log(1.0 - p) - 1e-12))


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copy of the model's full state (parameters and buffers such as BN running stats)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def rewind(model: nn.Module, state: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None = None,
           optimizer: torch.optim.Optimizer | None = None) -> None:
    """Load ``state`` (from :func:`snapshot`) into ``model`` exactly, then zero the weights pruned by ``masks``."""
    expected = set(model.state_dict())
    if set(state) != expected:
        raise ValueError(f"snapshot does not fit this model: missing {sorted(expected - set(state))[:8]}, "
                         f"unexpected {sorted(set(state) - expected)[:8]}")
    model.load_state_dict(state, strict=True)
    if masks is not None:
        apply_masks(model, masks, optimizer)


def prune_level(model: nn.Module, masks: Mapping[str, torch.Tensor] | None = None, fraction: float = 0.2,
                scope: str = "global", generator: torch.Generator | None = None, allow_collapse: bool = False,
                dense_layers: Sequence[str] | None = None, dense_first: bool = False,
                dense_last: bool = False, extra_layers: Sequence[str] | None = None,
                scores: Mapping[str, torch.Tensor] | None = None) -> Masks:
    """New masks without the ``fraction`` of still-active weights with the smallest |w|.

    ``scores`` ({name: score}, higher keeps) replaces |w|, e.g. a ticket criterion of
    :func:`sparsetime.pruning.ticket_criteria.ticket_scores`.

    Keeps exactly ``round((1 - fraction) * active)`` weights (active counted over all layers of
    ``masks`` for ``scope="global"``, per layer for ``"layer"``); the result is a subset of
    ``masks``. With ``masks=None`` the masked set comes from the selection options, all active.
    """
    p = check_fraction(fraction)
    check_scope(scope)
    if masks is None:
        names = selected_names(model, dense_layers, dense_first, dense_last, extra_layers)
        masks = full_masks(dict(zip(names, parameters_by_name(model, names))))
    params = dict(model.named_parameters())
    check_masks(masks, params)
    if scores is None:
        scores = {n: params[n].detach().abs() for n in masks}
    elif set(scores) != set(masks):
        raise ValueError(f"scores name {sorted(scores)[:8]}, masks {sorted(masks)[:8]}; they must name the same layers")
    scores = masked_scores(scores, masks)
    if scope == "global":
        keep = round((1.0 - p) * sum(int(m.sum()) for m in masks.values()))
        new = topk_masks(scores, keep, generator)
    else:
        new = layer_topk_masks(scores, {n: round((1.0 - p) * int(m.sum())) for n, m in masks.items()}, generator)
    check_collapse(new, f"pruning {fraction!r} of the active weights (scope {scope!r})", allow_collapse)
    return new


def random_masks(masks: Mapping[str, torch.Tensor], generator: torch.Generator | None = None,
                 seed: int | None = None) -> Masks:
    """Random-mask control: per layer, the same number of active weights at uniformly random positions."""
    check_masks(masks)
    gen = make_generator(generator, seed)
    out = {}
    for name, m in masks.items():
        n, k = m.numel(), int(m.sum())
        flat = torch.zeros(n, dtype=torch.bool)
        flat[torch.randperm(n, generator=gen)[:k]] = True
        out[name] = flat.reshape(m.shape).to(m.device)
    return out


def random_reinit(model: nn.Module, masks: Mapping[str, torch.Tensor] | None = None, seed: int = 0,
                  init_fn: Callable[[nn.Module], None] | None = None) -> None:
    """Random-reinitialisation control: redraw all weights (seeded), then apply ``masks``.

    By default every submodule's ``reset_parameters()`` is called (PyTorch's default init, BN
    statistics reset too); pass ``init_fn(model)`` for a model with its own initialisation.
    The global RNG state is restored afterwards.
    """
    check_int(seed, "seed")
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        if init_fn is not None:
            init_fn(model)
        else:
            skipped = []
            for name, module in model.named_modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
                elif any(True for _ in module.parameters(recurse=False)):
                    skipped.append(name)
            if skipped:
                logger.warning("random_reinit: modules %s have parameters but no reset_parameters(); "
                               "pass init_fn to reinitialise them", skipped)
    if masks is not None:
        apply_masks(model, masks)
