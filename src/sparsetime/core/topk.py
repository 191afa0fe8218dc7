"""Exact top-k selection with a seeded random tie-break at the boundary.

Every selection in the library (drop the k smallest, grow the k largest, prune to a density) goes
through :func:`select_topk`, so counts are always exact: ties at the k-th value are broken by a
random draw from the caller's generator, never by taking extra or fewer elements (SPEC §4.3).
"""
from __future__ import annotations

import torch


def select_topk(scores: torch.Tensor, k: int, generator: torch.Generator | None = None,
                largest: bool = True) -> torch.Tensor:
    """Indices (int64, into the flattened ``scores``) of exactly ``k`` largest (or smallest) scores.

    Elements strictly better than the k-th value are always taken; among the elements equal to it,
    the remaining slots are filled uniformly at random using ``generator``. NaN scores rank last.
    The returned indices are sorted ascending, so results do not depend on the topk backend's order.
    """
    flat = scores.reshape(-1)
    n = flat.numel()
    if k < 0 or k > n:
        raise ValueError(f"k must be in [0, {n}] (number of scores), got {k}")
    if k == 0:
        return torch.empty(0, dtype=torch.long, device=flat.device)
    if k == n:
        return torch.arange(n, device=flat.device)
    worst = float("-inf") if largest else float("inf")
    if flat.is_floating_point():
        flat = torch.nan_to_num(flat, nan=worst)
    kth = torch.topk(flat, k, largest=largest, sorted=False).values
    boundary = kth.min() if largest else kth.max()
    strictly = (flat > boundary) if largest else (flat < boundary)
    sure = strictly.nonzero().squeeze(1)
    tied = (flat == boundary).nonzero().squeeze(1)
    need = k - sure.numel()
    if need < tied.numel():
        pick = torch.randperm(tied.numel(), generator=generator, device="cpu")[:need].to(tied.device)
        tied = tied[pick]
    chosen = torch.cat([sure, tied])
    return chosen.sort().values
