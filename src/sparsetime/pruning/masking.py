"""From scores to masks, and masks onto a model.

:func:`masks_from_scores` keeps exactly ``round(density * N)`` weights with the highest scores,
over all layers at once (``scope="global"``) or per layer (``scope="layer"``), with the
tie rule of :func:`sparsetime.core.topk.select_topk`, so counts are exact and boundary ties are broken by a
seeded draw. A layer left with no weight ("layer collapse") is an error unless allowed.
:func:`apply_masks` zeroes pruned weights and their optimizer state.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from sparsetime.core.topk import topk_mask

from ._common import Masks, check_density, check_masks, check_scope


def _check_scores(scores: Mapping[str, torch.Tensor]) -> None:
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError(f"scores must be a non-empty mapping of parameter name -> tensor, got {scores!r}")
    for name, s in scores.items():
        if not isinstance(s, torch.Tensor):
            raise ValueError(f"scores[{name!r}] must be a tensor, got {type(s).__name__}")
        if s.numel() == 0:
            raise ValueError(f"scores[{name!r}] is empty (shape {tuple(s.shape)})")


def check_collapse(masks: Mapping[str, torch.Tensor], what: str, allow_collapse: bool) -> None:
    """ValueError naming the layers left with no active weight (layer collapse), unless allowed."""
    empty = [name for name, m in masks.items() if not bool(m.any())]
    if empty and not allow_collapse:
        raise ValueError(
            f"layer collapse: {what} leaves no weight in layer(s) {empty}; raise the density, change the "
            "scope or scores, or pass allow_collapse=True"
        )


def topk_masks(scores: Mapping[str, torch.Tensor], k: int, generator: torch.Generator | None = None) -> Masks:
    """Masks keeping exactly the ``k`` highest scores over all layers together (one threshold)."""
    _check_scores(scores)
    first = next(iter(scores.values()))
    flat = torch.cat([s.detach().reshape(-1).to(first.device) for s in scores.values()])
    chosen = topk_mask(flat, k, generator)
    masks, offset = {}, 0
    for name, s in scores.items():
        n = s.numel()
        masks[name] = chosen[offset:offset + n].reshape(s.shape).to(s.device)
        offset += n
    return masks


def layer_topk_masks(scores: Mapping[str, torch.Tensor], counts: Mapping[str, int],
                     generator: torch.Generator | None = None) -> Masks:
    """Masks keeping exactly ``counts[name]`` highest scores within each layer."""
    _check_scores(scores)
    masks = {}
    for name, s in scores.items():
        masks[name] = topk_mask(s, counts[name], generator)
    return masks


def masks_from_scores(scores: Mapping[str, torch.Tensor], density: float, scope: str = "global",
                      generator: torch.Generator | None = None, allow_collapse: bool = False) -> Masks:
    """Bool masks keeping the highest scores: exactly ``round(density * N)`` weights.

    ``scope="global"``: N is the total over all layers (one threshold); ``scope="layer"``: each
    layer keeps ``round(density * N_l)``. Ties at the boundary are broken with ``generator``;
    NaN ranks last. Raises ValueError on layer collapse unless ``allow_collapse``.
    """
    _check_scores(scores)
    density = check_density(density)
    check_scope(scope)
    if scope == "layer":
        masks = layer_topk_masks(scores, {n: round(density * s.numel()) for n, s in scores.items()}, generator)
    else:
        masks = topk_masks(scores, round(density * sum(s.numel() for s in scores.values())), generator)
    check_collapse(masks, f"pruning to density {density:g} (scope {scope!r})", allow_collapse)
    return masks


def mask_density(masks: Mapping[str, torch.Tensor]) -> float:
    """Realised density: active weights over all weights of ``masks``."""
    check_masks(masks)
    total = sum(m.numel() for m in masks.values())
    return sum(int(m.sum()) for m in masks.values()) / total


def full_masks(params: Mapping[str, torch.Tensor]) -> Masks:
    """All-True masks shaped like ``params`` (the dense starting point)."""
    return {n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()}


def masked_scores(scores: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None) -> Masks:
    """Copy of ``scores`` with inactive positions set to -inf, so an iterative prune never revives them."""
    out = {}
    for name, s in scores.items():
        s = s.detach().clone()
        if not s.is_floating_point():
            s = s.double()
        if masks is not None and name in masks:
            s.masked_fill_(~masks[name].to(s.device), float("-inf"))
        out[name] = s
    return out


@torch.no_grad()
def zero_optimizer_state(optimizer: torch.optim.Optimizer, param: torch.Tensor, mask: torch.Tensor) -> None:
    """Zero every state tensor of ``param`` that has its shape (momentum, Adam moments, ...) where ``mask`` is False."""
    state = optimizer.state.get(param)
    if not state:
        return
    for value in state.values():
        if isinstance(value, torch.Tensor) and value.shape == param.shape:
            value.masked_fill_(~mask.to(value.device), 0)


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor],
                optimizer: torch.optim.Optimizer | None = None) -> None:
    """Set pruned weights (mask False) to exactly zero, and their optimizer state when ``optimizer`` is given."""
    params = dict(model.named_parameters())
    check_masks(masks, params)
    for name, mask in masks.items():
        p = params[name]
        m = mask.to(p.device)
        p.masked_fill_(~m, 0)
        if optimizer is not None:
            zero_optimizer_state(optimizer, p, m)


@torch.no_grad()
def fill_pruned(model: nn.Module, masks: Mapping[str, torch.Tensor], values: Mapping[str, torch.Tensor]) -> None:
    """Set pruned weights (mask False) to ``values`` instead of zero: pruned weights frozen at a value."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        p = params[name]
        p.copy_(torch.where(mask.to(p.device), p, values[name].to(p.device, p.dtype)))
