"""Distances between masks, and early-bird ticket detection (You et al. 2020).

The Hamming distance counts positions where two masks disagree; normalised, it is divided by the
number of positions. :class:`EarlyBird` keeps the last ``window`` masks (one per epoch) and reports
a ticket once the newest is within ``threshold`` of each of the previous ``window - 1``.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch

from ._common import Masks, check_int, check_masks

logger = logging.getLogger(__name__)


def hamming_distance(masks_a: Mapping[str, torch.Tensor], masks_b: Mapping[str, torch.Tensor],
                     normalized: bool = True) -> float | int:
    """Positions where ``masks_a`` and ``masks_b`` differ, over all layers (a fraction if ``normalized``)."""
    check_masks(masks_a, what="masks_a")
    check_masks(masks_b, what="masks_b")
    if set(masks_a) != set(masks_b):
        raise ValueError(f"masks name different layers: only in a {sorted(set(masks_a) - set(masks_b))}, "
                         f"only in b {sorted(set(masks_b) - set(masks_a))}")
    differ, total = 0, 0
    for name, a in masks_a.items():
        b = masks_b[name]
        if a.shape != b.shape:
            raise ValueError(f"mask {name!r} has shape {tuple(a.shape)} in a and {tuple(b.shape)} in b")
        differ += int((a != b.to(a.device)).sum())
        total += a.numel()
    return differ / total if normalized else differ


class EarlyBird:
    """Early-bird detector: feed one mask per epoch to :meth:`update`; True once a ticket emerged.

    A ticket is found when the newest mask's normalised Hamming distance to each of the previous
    ``window - 1`` masks is at most ``threshold`` (window 5, threshold 0.1 as in the paper).
    """

    def __init__(self, window: int = 5, threshold: float = 0.1) -> None:
        self.window = check_int(window, "window", minimum=2)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
        self.threshold = float(threshold)
        self.history: list[Masks] = []
        self.distances: list[float] = []
        self.updates = 0
        self.found_at: int | None = None

    @property
    def found(self) -> bool:
        """Whether a ticket has emerged at some update."""
        return self.found_at is not None

    def update(self, masks: Mapping[str, torch.Tensor]) -> bool:
        """Record ``masks`` (copied); return True when the last ``window`` masks agree within ``threshold``."""
        check_masks(masks)
        self.history.append({n: m.detach().cpu().clone() for n, m in masks.items()})
        self.history = self.history[-self.window:]
        self.updates += 1
        if len(self.history) < self.window:
            self.distances = []
            return False
        newest = self.history[-1]
        self.distances = [float(hamming_distance(newest, old)) for old in self.history[:-1]]
        emerged = max(self.distances) <= self.threshold
        if emerged and self.found_at is None:
            self.found_at = self.updates
            logger.info("early-bird ticket at update %d (distances %s)", self.updates, self.distances)
        return emerged

    def state_dict(self) -> dict[str, Any]:
        """Window, threshold, stored masks and counters (tensors and plain values only)."""
        return {"window": self.window, "threshold": self.threshold, "history": self.history,
                "updates": self.updates, "found_at": self.found_at, "distances": list(self.distances)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        if state.get("window") != self.window or state.get("threshold") != self.threshold:
            raise ValueError(f"saved window/threshold {state.get('window')}/{state.get('threshold')} differ from "
                             f"{self.window}/{self.threshold}")
        for masks in state["history"]:
            check_masks(masks)
        self.history = [dict(m) for m in state["history"]]
        self.updates = check_int(state["updates"], "updates", minimum=0)
        self.found_at = state["found_at"]
        self.distances = list(state["distances"])
