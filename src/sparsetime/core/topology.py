"""Selection rules of the topology-update step shared by every DST method.

The update step itself is :meth:`sparsetime.core.sparsifier.DynamicSparsity.update_topology`:
drop sets come from :func:`sparsetime.core.topk.select_topk` over the active weights' scores;
this module holds how many weights an update replaces, score-based growth among the candidate
(inactive) positions, and the redistribution of the growth budget. Everything works on flat
indices, so both execution modes share the rules.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .topk import select_topk


def drop_count(fraction: float, active: int) -> int:
    """k_l = floor(f * n_l): the one rounding rule for how many weights an update replaces."""
    return int(math.floor(fraction * active + 1e-9))


def select_grow(candidate_idx: torch.Tensor, grow_scores: torch.Tensor, k: int,
                generator: torch.Generator) -> torch.Tensor:
    """Flat indices of the ``k`` candidates (strictly inactive positions) with the largest score.

    Selecting among candidate indices, never over all positions, is what guarantees that an active
    weight is never "grown" (sparse_learning #22).
    """
    if k > candidate_idx.numel():
        raise ValueError(f"cannot grow {k} weights: only {candidate_idx.numel()} inactive positions")
    local = select_topk(grow_scores.reshape(-1)[candidate_idx], k, generator, largest=True)
    return candidate_idx[local]


def allocate(total: int, weights: Sequence[float], caps: Sequence[int]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` with ``out[i] <= caps[i]``.

    Largest-remainder rounding; layers that hit their cap give the excess to the others
    (SNFS redistribution with a constant total). Raises if the caps cannot hold ``total``.
    """
    if total > sum(caps):
        raise ValueError(f"cannot place {total} weights in layers with room for {sum(caps)}")
    out = [0] * len(weights)
    open_ = [i for i in range(len(weights)) if caps[i] > 0]
    left = total
    while left > 0 and open_:
        w = [max(float(weights[i]), 0.0) for i in open_]
        wsum = sum(w)
        if wsum <= 0.0 or not math.isfinite(wsum):
            w, wsum = [1.0] * len(open_), float(len(open_))
        share = [left * x / wsum for x in w]
        base = [min(int(math.floor(s)), caps[i] - out[i]) for s, i in zip(share, open_)]
        for b, i in zip(base, open_):
            out[i] += b
        left -= sum(base)
        if left > 0:
            order = sorted(range(len(open_)), key=lambda j: share[j] - math.floor(share[j]), reverse=True)
            for j in order:
                i = open_[j]
                if left == 0:
                    break
                if out[i] < caps[i]:
                    out[i] += 1
                    left -= 1
        open_ = [i for i in open_ if out[i] < caps[i]]
    return out
