"""Exploration bookkeeping for ITOP (SPEC §5): fired masks, Rs, lifetimes of grown weights."""
from __future__ import annotations

from collections import Counter

import torch


class ExplorationTracker:
    """Tracks, per layer, every position ever active and the life of every grown weight.

    - ``fired``: OR of all masks the layer has had (initial mask included); Rs = |F| / N.
    - ``birth``: step at which an active weight was grown (-1 for weights of the initial mask).
    - ``grown_ever`` / ``reliable``: positions ever grown, and those whose |w| exceeded the layer's
      drop threshold at some update while active ("reliably explored").
    """

    def __init__(self, masks: dict[str, torch.Tensor]) -> None:
        self.fired = {n: m.clone() for n, m in masks.items()}
        self.birth = {n: torch.full(m.shape, -1, dtype=torch.int32, device=m.device) for n, m in masks.items()}
        self.grown_ever = {n: torch.zeros_like(m) for n, m in masks.items()}
        self.reliable = {n: torch.zeros_like(m) for n, m in masks.items()}
        self.lifetimes: Counter[int] = Counter()
        self.grown_checked = 0   # grown weights whose next update has happened
        self.grown_survived = 0  # ... and that were still active after it
        self.last_update_step = -1

    def rate(self) -> float:
        """Rs over all tracked layers."""
        fired = sum(int(f.sum()) for f in self.fired.values())
        total = sum(f.numel() for f in self.fired.values())
        return fired / total

    def layer_rate(self, name: str) -> float:
        f = self.fired[name]
        return int(f.sum()) / f.numel()

    @torch.no_grad()
    def record(self, name: str, step: int, weight: torch.Tensor, dropped: torch.Tensor,
               grown: torch.Tensor, new_mask: torch.Tensor, old_mask: torch.Tensor) -> None:
        """Book one layer's update; call before the dropped weights are zeroed."""
        birth = self.birth[name].view(-1)
        if dropped.numel() > 0:
            mags = weight.detach().reshape(-1).abs()
            threshold = mags[dropped].max()
            self.reliable[name] |= old_mask & self.grown_ever[name] & (weight.detach().abs() > threshold)
            b = birth[dropped]
            born = b[b >= 0]
            if born.numel():
                values, counts = torch.unique(step - born, return_counts=True)
                self.lifetimes.update(dict(zip(values.tolist(), counts.tolist())))
        if self.last_update_step >= 0:
            prev = birth == self.last_update_step
            prev_count = int(prev.sum())
            if prev_count:
                lost = int(prev[dropped].sum()) if dropped.numel() else 0
                self.grown_checked += prev_count
                self.grown_survived += prev_count - lost
        birth[dropped] = -1
        birth[grown] = step
        self.grown_ever[name].view(-1)[grown] = True
        self.fired[name] |= new_mask

    def finish_update(self, step: int) -> None:
        self.last_update_step = step

    def survival_fraction(self) -> float | None:
        """Fraction of grown weights still active after the next update (None before any)."""
        return None if self.grown_checked == 0 else self.grown_survived / self.grown_checked

    def reliable_fraction(self) -> float | None:
        grown = sum(int(g.sum()) for g in self.grown_ever.values())
        if grown == 0:
            return None
        return sum(int(r.sum()) for r in self.reliable.values()) / grown

    def stats(self) -> dict:
        """Numbers a program can read: Rs, survival, reliable fraction, lifetime histogram."""
        hist = dict(sorted(self.lifetimes.items()))
        total = sum(hist.values())
        mean = (sum(k * v for k, v in hist.items()) / total) if total else None
        return {
            "itop_rate": self.rate(),
            "survival_fraction": self.survival_fraction(),
            "reliable_fraction": self.reliable_fraction(),
            "lifetime_histogram": hist,
            "mean_lifetime": mean,
            "dropped_grown_weights": total,
        }

    def state_dict(self) -> dict:
        return {
            "fired": {n: t.cpu().clone() for n, t in self.fired.items()},
            "birth": {n: t.cpu().clone() for n, t in self.birth.items()},
            "grown_ever": {n: t.cpu().clone() for n, t in self.grown_ever.items()},
            "reliable": {n: t.cpu().clone() for n, t in self.reliable.items()},
            "lifetimes": {int(k): int(v) for k, v in self.lifetimes.items()},
            "grown_checked": self.grown_checked,
            "grown_survived": self.grown_survived,
            "last_update_step": self.last_update_step,
        }

    def load_state_dict(self, state: dict) -> None:
        for key in ("fired", "birth", "grown_ever", "reliable"):
            mine = getattr(self, key)
            for n in mine:
                mine[n] = state[key][n].to(mine[n].device)
        self.lifetimes = Counter({int(k): int(v) for k, v in state["lifetimes"].items()})
        self.grown_checked = int(state["grown_checked"])
        self.grown_survived = int(state["grown_survived"])
        self.last_update_step = int(state["last_update_step"])
