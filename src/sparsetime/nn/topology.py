"""One drop-and-grow update of a :class:`SparseLinear` in index space (SPEC §4.2-4.4).

``DynamicSparsity(execution="sparse")`` can call :func:`prune_and_grow` per layer, or
compose the primitives of :mod:`sparsetime.kernels.topology` itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..kernels.topology import drop_smallest, grow_unexplored, merge_topology, sample_absent, union_sorted
from .base import SparseModule

GROWTH_MODES = ("random", "unexplored", "gradient")


@dataclass
class TopologyUpdate:
    """What one update did: sorted flat indices dropped and grown, the source map of the new
    entries (old position or -1) and the updated fired set (None if not tracked)."""

    dropped: torch.Tensor
    grown: torch.Tensor
    src: torch.Tensor
    fired: torch.Tensor | None


def prune_and_grow(layer: SparseModule, k: int, growth: str = "random",
                   generator: torch.Generator | None = None,
                   optimizer: torch.optim.Optimizer | None = None,
                   fired: torch.Tensor | None = None, regrow_dropped: bool = True) -> TopologyUpdate:
    """Drop the k smallest-|w| weights of a sparse layer and grow k strictly inactive positions.

    growth: "random" (SET), "unexplored" (ITOP appendix F; needs ``fired``) or "gradient" (RigL;
    needs ``layer.capture_gradient_inputs(True)`` and a backward pass). Grown weights and their
    optimizer state start at exactly 0; survivors keep both. ``regrow_dropped=False`` forbids
    regrowing the positions dropped in this update. ``fired`` (sorted int64 flat indices of every
    position ever active) is returned updated.
    """
    if growth not in GROWTH_MODES:
        raise ValueError(f"unknown growth {growth!r}; allowed: {', '.join(GROWTH_MODES)}")
    if growth == "unexplored" and fired is None:
        raise ValueError("growth='unexplored' needs the fired set (sorted int64 flat indices)")
    rows, cols = layer.matrix_shape
    n = rows * cols
    old_flat = layer.flat_indices()
    keep, drop = drop_smallest(layer.weight_values, k, generator)
    excluded = old_flat[keep] if regrow_dropped else old_flat
    if growth == "random":
        grown = sample_absent(n, excluded, k, generator)
    elif growth == "unexplored":
        grown = grow_unexplored(n, excluded, union_sorted(fired, old_flat), k, generator)
    else:
        grown = layer.dense_gradient_topk(k, excluded, generator)
    new_flat, src = merge_topology(old_flat, keep, grown)
    layer.set_topology(new_flat, src, optimizer)
    new_fired = union_sorted(fired, grown) if fired is not None else None
    return TopologyUpdate(old_flat[drop], grown, src, new_fired)
