"""What the surviving weights of a ticket restart from (Zhou et al. 2019), as pure tensor functions.

``start`` is a layer's weights at the rewind step k (the initialisation when k = 0); ``mask`` the
ticket's mask of that layer. The restarts: ``rewind`` (``start`` itself, Frankle & Carbin),
``reinit`` (fresh random weights, ``fresh``), ``reshuffle`` (the surviving start values permuted
among the surviving positions of the layer), ``constant`` (±α with the start signs, α the std of the
layer's start weights) and ``signs`` (the start signs with the magnitudes of fresh random weights).
Only surviving positions change; what pruned weights hold is decided by the caller (zero, frozen).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ._common import Masks

RESTARTS = ("rewind", "reinit", "reshuffle", "constant", "signs")
#: restarts that need fresh random weights
NEEDS_FRESH = ("reinit", "signs")


def sign_of(values: torch.Tensor) -> torch.Tensor:
    """+1 where ``values`` >= 0, else -1 (a zero counts as positive, so a sign is never 0)."""
    return torch.where(values >= 0, torch.ones_like(values), -torch.ones_like(values))


def layer_std(values: torch.Tensor) -> float:
    """Standard deviation of all of a layer's values (population std)."""
    return float(values.detach().double().std(unbiased=False))


def permute_masked(values: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Copy of ``values`` whose entries at ``mask`` are randomly permuted among those positions."""
    out = values.detach().clone()
    flat, where = out.reshape(-1), mask.reshape(-1).nonzero().squeeze(1)
    order = torch.randperm(where.numel(), generator=generator).to(where.device)
    flat[where] = flat[where[order]]
    return out


def restart_layer(restart: str, start: torch.Tensor, mask: torch.Tensor, fresh: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """One layer's weights after ``restart``; positions outside ``mask`` keep ``start``."""
    if restart not in RESTARTS:
        raise ValueError(f"restart {restart!r} is unknown; allowed: {', '.join(RESTARTS)}")
    if restart in NEEDS_FRESH and fresh is None:
        raise ValueError(f"restart {restart!r} needs fresh random weights (fresh=...)")
    if restart == "rewind":
        new = start
    elif restart == "reinit":
        new = fresh
    elif restart == "reshuffle":
        return permute_masked(start, mask, generator)
    elif restart == "constant":
        new = sign_of(start) * layer_std(start)
    else:
        new = sign_of(start) * fresh.abs()
    return torch.where(mask.to(start.device), new.to(start.dtype), start).detach().clone()


def restart_weights(restart: str, start: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor],
                    fresh: Mapping[str, torch.Tensor] | None = None,
                    generator: torch.Generator | None = None) -> Masks:
    """{name: restarted weights} for every layer of ``masks``."""
    return {n: restart_layer(restart, start[n], m, None if fresh is None else fresh[n], generator)
            for n, m in masks.items()}
