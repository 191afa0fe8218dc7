"""Exploration bookkeeping for ITOP: fired sets, Rs, lifetimes and survival of grown weights.

One implementation for every layer, in index space (memory O(active + explored), no dense mask):

- ``fired``: every position ever active (the initial mask included); Rs = sum |F_l| / sum N_l,
  non-decreasing, starting at the realised density;
- ``birth``: per active weight (in the store's sorted order), the update step that grew it, or
  -1 for weights of the initial mask; when a grown weight is dropped its lifetime is booked;
- survival: of the weights grown at one update, the fraction still active after the next one
  (every layer is checked at every update, also one that dropped nothing);
- ``grown_ever`` / ``reliable``: positions ever grown, and those whose |w| exceeded the layer's
  drop threshold (the largest dropped |w|) at an update while active ("reliably explored").
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .index_sets import isin_sorted, mask_from_indices, remap, union_sorted


@dataclass
class LayerTrack:
    """Exploration state of one layer; index sets are sorted int64 flat indices."""

    size: int
    fired: torch.Tensor
    birth: torch.Tensor
    grown_ever: torch.Tensor
    reliable: torch.Tensor

    @classmethod
    def start(cls, size: int, active: torch.Tensor) -> "LayerTrack":
        empty = torch.empty(0, dtype=torch.long, device=active.device)
        return cls(size, active.long().clone(), torch.full((active.numel(),), -1, dtype=torch.int32,
                                                           device=active.device), empty, empty.clone())

    def state_dict(self) -> dict:
        return {"size": self.size, "fired": self.fired.cpu().clone(), "birth": self.birth.cpu().clone(),
                "grown_ever": self.grown_ever.cpu().clone(), "reliable": self.reliable.cpu().clone()}


class ExplorationTracker:
    """Tracks, per layer, every position ever active and the life of every grown weight."""

    def __init__(self, layers: Mapping[str, tuple[int, torch.Tensor]]) -> None:
        """``layers``: {name: (size, sorted active flat indices)}."""
        self.tracks = {n: LayerTrack.start(size, active) for n, (size, active) in layers.items()}
        self.lifetimes: Counter[int] = Counter()
        self.grown_checked = 0   # grown weights whose next update has happened
        self.grown_survived = 0  # ... and that were still active after it
        self.last_update_step = -1

    def rate(self) -> float:
        """Rs over all tracked layers."""
        fired = sum(t.fired.numel() for t in self.tracks.values())
        return fired / sum(t.size for t in self.tracks.values())

    def layer_rate(self, name: str) -> float:
        track = self.tracks[name]
        return track.fired.numel() / track.size

    def fired_indices(self, name: str) -> torch.Tensor:
        """Sorted int64 flat indices of every position of ``name`` ever active."""
        return self.tracks[name].fired

    def fired_mask(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """Dense bool fired mask of ``name`` (materialised: O(size))."""
        return mask_from_indices(self.tracks[name].fired, shape)

    def births(self, name: str) -> torch.Tensor:
        """Birth step per active weight of ``name`` (-1: initial mask), in sorted position order."""
        return self.tracks[name].birth

    def _book_survival(self, births: torch.Tensor, dropped: torch.Tensor) -> None:
        if self.last_update_step < 0:
            return
        prev = births == self.last_update_step
        prev_count = int(prev.sum())
        if prev_count:
            lost = int(prev[dropped].sum()) if dropped.numel() else 0
            self.grown_checked += prev_count
            self.grown_survived += prev_count - lost

    @torch.no_grad()
    def record(self, name: str, step: int, values: torch.Tensor, active: torch.Tensor,
               dropped_local: torch.Tensor, grown: torch.Tensor, src: torch.Tensor) -> None:
        """Book one layer's update: ``values``/``active`` before it, ``dropped_local`` positions into
        them, ``grown`` sorted flat indices, ``src`` each new entry's old position (-1: grown)."""
        track = self.tracks[name]
        if dropped_local.numel() > 0:
            mags = values.detach().abs()
            threshold = mags[dropped_local].max()
            above = active[mags > threshold]
            track.reliable = union_sorted(track.reliable, above[isin_sorted(track.grown_ever, above)])
            born = track.birth[dropped_local]
            born = born[born >= 0]
            if born.numel():
                lives, counts = torch.unique(step - born, return_counts=True)
                self.lifetimes.update(dict(zip(lives.tolist(), counts.tolist())))
        self._book_survival(track.birth, dropped_local)
        birth = remap(track.birth, src.to(track.birth.device))
        birth[src.to(birth.device) < 0] = step
        track.birth = birth
        track.grown_ever = union_sorted(track.grown_ever, grown)
        track.fired = union_sorted(track.fired, grown)

    def record_unchanged(self, name: str) -> None:
        """Book an update that left layer ``name`` as it was: its last growth all survived."""
        self._book_survival(self.tracks[name].birth, torch.empty(0, dtype=torch.long))

    def finish_update(self, step: int) -> None:
        self.last_update_step = step

    def survival_fraction(self) -> float | None:
        """Fraction of grown weights still active after the next update (None before any)."""
        return None if self.grown_checked == 0 else self.grown_survived / self.grown_checked

    def reliable_fraction(self) -> float | None:
        grown = sum(t.grown_ever.numel() for t in self.tracks.values())
        if grown == 0:
            return None
        return sum(t.reliable.numel() for t in self.tracks.values()) / grown

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
            "index": {n: t.state_dict() for n, t in self.tracks.items()},
            "lifetimes": {int(k): int(v) for k, v in self.lifetimes.items()},
            "grown_checked": self.grown_checked,
            "grown_survived": self.grown_survived,
            "last_update_step": self.last_update_step,
        }

    def load_state_dict(self, state: Mapping, active: Mapping[str, torch.Tensor]) -> None:
        """Restore from :meth:`state_dict` (or the dense per-layer tensors that states of version 1
        and 2 hold for masked layers); ``active`` is the restored topology, {name: sorted indices}."""
        saved_index = state.get("index", {})
        for n, track in self.tracks.items():
            dev = track.fired.device
            if n in saved_index:
                saved = saved_index[n]
                if int(saved["size"]) != track.size:
                    raise ValueError(f"exploration state of {n!r} has size {saved['size']}, the layer {track.size}")
                self.tracks[n] = LayerTrack(track.size, *(saved[k].to(dev).clone() for k in
                                                          ("fired", "birth", "grown_ever", "reliable")))
            else:  # an older state kept dense tensors of the weight's shape
                flat = {k: state[k][n].reshape(-1) for k in ("fired", "birth", "grown_ever", "reliable")}
                if flat["fired"].numel() != track.size:
                    raise ValueError(f"exploration state of {n!r} has size {flat['fired'].numel()}, "
                                     f"the layer {track.size}")
                act = active[n].to(flat["birth"].device).long()
                self.tracks[n] = LayerTrack(track.size, flat["fired"].nonzero().squeeze(1).to(dev),
                                            flat["birth"][act].to(dev, torch.int32),
                                            flat["grown_ever"].nonzero().squeeze(1).to(dev),
                                            flat["reliable"].nonzero().squeeze(1).to(dev))
        self.lifetimes = Counter({int(k): int(v) for k, v in state["lifetimes"].items()})
        self.grown_checked = int(state["grown_checked"])
        self.grown_survived = int(state["grown_survived"])
        self.last_update_step = int(state["last_update_step"])
