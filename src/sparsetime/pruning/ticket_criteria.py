"""Mask criteria of a lottery ticket (Zhou et al. 2019): which weights to keep, from w_i and w_f.

Each criterion is a score (higher keeps) computed per weight from the weights training started
from (``init``, w_i: the rewind weights, the initialisation when k = 0) and the trained weights
(``final``, w_f). ``large_final`` is |w_f|, the magnitude pruning of Frankle & Carbin; the pruning
itself (exact counts, global or per layer, never reviving a pruned weight) stays in
:func:`sparsetime.pruning.lottery.prune_level`, which takes these scores.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ._common import Masks

CRITERIA = ("large_final", "small_final", "large_init", "small_init", "large_init_large_final",
            "small_init_small_final", "magnitude_increase", "movement", "random")


def criterion_score(criterion: str, init: torch.Tensor, final: torch.Tensor,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Score of every weight of one layer under ``criterion`` (higher keeps).

    ``large_init_large_final`` keeps weights large at both ends: min(|w_i|, |w_f|);
    ``small_init_small_final`` the reverse: -max(|w_i|, |w_f|); ``random``: U(0, 1) from ``generator``.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion {criterion!r} is unknown; allowed: {', '.join(CRITERIA)}")
    if init.shape != final.shape:
        raise ValueError(f"init and final weights differ in shape: {tuple(init.shape)} vs {tuple(final.shape)}")
    a_i, a_f = init.detach().abs().double(), final.detach().abs().double()
    if criterion == "large_final":
        return a_f
    if criterion == "small_final":
        return -a_f
    if criterion == "large_init":
        return a_i
    if criterion == "small_init":
        return -a_i
    if criterion == "large_init_large_final":
        return torch.minimum(a_i, a_f)
    if criterion == "small_init_small_final":
        return -torch.maximum(a_i, a_f)
    if criterion == "magnitude_increase":
        return a_f - a_i
    if criterion == "movement":
        return (final.detach().double() - init.detach().double()).abs()
    return torch.rand(init.shape, generator=generator, dtype=torch.float64).to(init.device)


def ticket_scores(criterion: str, init: Mapping[str, torch.Tensor], final: Mapping[str, torch.Tensor],
                  generator: torch.Generator | None = None) -> Masks:
    """{name: score} for every layer of ``final`` (``init`` must hold the same names)."""
    missing = sorted(set(final) - set(init))
    if missing:
        raise ValueError(f"init weights lack layers {missing[:8]} of the final weights")
    return {n: criterion_score(criterion, init[n].to(w.device), w, generator) for n, w in final.items()}
