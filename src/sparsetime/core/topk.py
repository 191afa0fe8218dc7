"""Exact top-k selection with a seeded random tie-break at the boundary.

Every selection in the library (drop the k smallest, grow the k largest, prune to a density) goes
through :func:`topk_mask` / :func:`select_topk`, so counts are always exact: ties at the k-th
value are broken by a random draw from the caller's generator, never by taking extra or fewer
elements. The boundary is found with one O(n) ``kthvalue``; no index sort.
"""
from __future__ import annotations

import operator

import torch


def topk_mask(scores: torch.Tensor, k: int, generator: torch.Generator | None = None,
              largest: bool = True) -> torch.Tensor:
    """Bool mask (shape of ``scores``) of exactly ``k`` largest (or smallest) scores.

    Elements strictly better than the k-th value are always taken; among the elements equal to it,
    the remaining slots are filled uniformly at random using ``generator`` (a CPU generator).
    NaN scores rank last.
    """
    flat = scores.detach().reshape(-1)
    n = flat.numel()
    try:
        k = operator.index(k)
    except TypeError:
        raise ValueError(f"k must be an integer in [0, {n}] (number of scores), got {k!r}") from None
    if k < 0 or k > n:
        raise ValueError(f"k must be an integer in [0, {n}] (number of scores), got {k!r}")
    if k == 0 or k == n:
        return torch.full(tuple(scores.shape), k == n, dtype=torch.bool, device=flat.device)
    if flat.is_floating_point():
        flat = torch.nan_to_num(flat, nan=float("-inf") if largest else float("inf"))
    if largest:
        boundary = torch.kthvalue(flat, n - k + 1).values
        chosen = flat > boundary
    else:
        boundary = torch.kthvalue(flat, k).values
        chosen = flat < boundary
    tied = (flat == boundary).nonzero().squeeze(1)
    need = k - int(chosen.sum())
    if need < tied.numel():
        pick = torch.randperm(tied.numel(), generator=generator, device="cpu")[:need].to(tied.device)
        tied = tied[pick]
    chosen[tied] = True
    return chosen.reshape(scores.shape)


def select_topk(scores: torch.Tensor, k: int, generator: torch.Generator | None = None,
                largest: bool = True) -> torch.Tensor:
    """Sorted indices (int64, into the flattened ``scores``) of the :func:`topk_mask` selection."""
    return topk_mask(scores, k, generator, largest).reshape(-1).nonzero().squeeze(1)
