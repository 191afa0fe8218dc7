"""SynFlow: iterative synaptic flow pruning (Tanaka et al. 2020).

On a double-precision copy of the model in eval mode with every floating parameter and buffer
replaced by its absolute value, R = 1ᵀ f(1) for a single all-ones input; the score of weight w
is |w ⊙ ∂R/∂w|. Over E rounds (default 100) the weights are pruned to densities d^(e/E),
e = 1..E, the mask being applied (weights zeroed) before each round's scores. Weights pruned in
an earlier round score -inf and a round never keeps more weights than are active, so no weight
revives. Given starting ``masks``, the schedule is the same (rounds whose density is
above the masks' simply keep every active weight). The scores of the last round are
returned: :func:`masks_from_scores` at the target density gives the final mask.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from ._common import (Batch, Masks, check_density, check_int, check_scope, make_generator,
                      parameters_by_name, resolve_device, selected_names, working_copy)
from .masking import topk_mask

logger = logging.getLogger(__name__)


def _input_shape(batches: Iterable[Batch] | None, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    if input_shape is not None:
        shape = tuple(input_shape)
        if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
            raise ValueError(f"input_shape must be a non-empty sequence of positive ints (no batch dim), "
                             f"got {input_shape!r}")
        return shape
    if batches is None:
        raise ValueError("synflow needs the input shape: pass input_shape=(C, H, W) (no batch dim) or batches")
    first = next(iter(batches), None)
    if not isinstance(first, (tuple, list)) or not isinstance(first[0], torch.Tensor) or first[0].dim() < 2:
        raise ValueError("synflow: the first batch must be (inputs, targets) with inputs of shape (B, ...); "
                         "or pass input_shape")
    return tuple(first[0].shape[1:])


def _check_reachable(keep: torch.Tensor, sizes: list[int], names: list[str], density: float, scope: str) -> None:
    """The target may not need more weights than the starting masks hold (pruning adds none)."""
    if scope == "global":
        if round(density * keep.numel()) > int(keep.sum()):
            raise ValueError(f"density {density:g} is above the density {int(keep.sum()) / keep.numel():g} of the "
                             "given masks; pruning cannot add weights")
        return
    for name, part in zip(names, torch.split(keep, sizes)):
        if round(density * part.numel()) > int(part.sum()):
            raise ValueError(f"density {density:g} is above the density {int(part.sum()) / part.numel():g} of the "
                             f"given mask of layer {name!r} (scope 'layer'); pruning cannot add weights")


def _shrink(scores: torch.Tensor, keep: torch.Tensor, sizes: list[int], density: float, scope: str,
            gen: torch.Generator | None) -> torch.Tensor:
    """New flat mask keeping round(density * N) weights (N over all layers, or per layer).

    Inactive positions score -inf and no more weights are kept than are active, so masks only
    shrink and no pruned weight revives. ``scores`` is modified in place.
    """
    scores.masked_fill_(~keep, float("-inf"))
    if scope == "global":
        return topk_mask(scores, min(round(density * scores.numel()), int(keep.sum())), gen)
    parts = zip(torch.split(scores, sizes), torch.split(keep, sizes))
    return torch.cat([topk_mask(s, min(round(density * s.numel()), int(k.sum())), gen) for s, k in parts])


def synflow_scores(model: nn.Module, batches: Iterable[Batch] | None = None, *, density: float | None = None,
                   rounds: int = 100, scope: str = "global", input_shape: Sequence[int] | None = None,
                   generator: torch.Generator | None = None, seed: int | None = None,
                   device: str | torch.device | None = None, masks: Mapping[str, torch.Tensor] | None = None,
                   dense_layers: Sequence[str] | None = None, dense_first: bool = False,
                   dense_last: bool = False, extra_layers: Sequence[str] | None = None) -> Masks:
    """Iterative SynFlow scores (float64) for the target ``density`` (required), after ``rounds`` rounds.

    The intermediate rounds prune with ``scope`` ('global' or 'layer'); ties are broken with
    ``generator`` (or ``seed``). Only the input shape is taken from ``batches`` (first batch).
    """
    if density is None:
        raise ValueError("synflow needs the target density option (density=<float in (0, 1]>)")
    density = check_density(density)
    rounds = check_int(rounds, "rounds", minimum=1)
    check_scope(scope)
    names = selected_names(model, dense_layers, dense_first, dense_last, extra_layers)
    shape = _input_shape(batches, input_shape)
    dev = resolve_device(model, device)
    gen = make_generator(generator, seed)
    work, params = working_copy(model, names, masks, dev, dtype=torch.float64)
    work.eval()
    with torch.no_grad():
        for t in work.state_dict().values():
            if t.is_floating_point():
                t.abs_()
        # one flat buffer for all scored weights: masking and ranking become single tensor ops
        sizes = [p.numel() for p in params]
        flat_w = torch.cat([p.detach().reshape(-1) for p in params])
        for p, view in zip(params, torch.split(flat_w, sizes)):
            p.data = view.view(p.shape)
    keep = torch.cat([(masks[n].to(dev) if masks is not None and n in masks else torch.ones_like(p, dtype=torch.bool))
                      .reshape(-1) for n, p in zip(names, params)])
    _check_reachable(keep, sizes, names, density, scope)
    ones = torch.ones((1, *shape), dtype=torch.float64, device=dev)
    for e in range(1, rounds + 1):
        r = work(ones).sum()
        grads = torch.autograd.grad(r, params, allow_unused=True)
        scores = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for p, g in zip(params, grads)])
        scores.mul_(flat_w).abs_()
        if e < rounds:
            keep = _shrink(scores, keep, sizes, density ** (e / rounds), scope, gen)
            flat_w.masked_fill_(~keep, 0)
    scores.masked_fill_(~keep, float("-inf"))
    logger.debug("synflow: %d rounds to density %g (scope %s)", rounds, density, scope)
    originals = parameters_by_name(model, names)
    return {n: part.view(o.shape).to(o.device)
            for n, part, o in zip(names, torch.split(scores, sizes), originals)}
