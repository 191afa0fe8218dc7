"""Exploration bookkeeping for ITOP (SPEC §5): fired masks, Rs, lifetimes of grown weights."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from .index_sets import isin_sorted, mask_from_indices, remap, union_sorted


@dataclass
class IndexTrack:
    """Exploration state of a layer executed sparse, in O(active + explored) memory.

    ``fired``, ``grown_ever`` and ``reliable`` are sorted int64 flat indices; ``birth`` holds one
    int32 per active weight, in the layer's CSR (= ascending flat index) order.
    """

    size: int
    fired: torch.Tensor
    birth: torch.Tensor
    grown_ever: torch.Tensor
    reliable: torch.Tensor

    @classmethod
    def start(cls, size: int, active: torch.Tensor) -> "IndexTrack":
        empty = torch.empty(0, dtype=torch.long, device=active.device)
        return cls(size, active.long().clone(), torch.full((active.numel(),), -1, dtype=torch.int32,
                                                           device=active.device), empty, empty.clone())

    def state_dict(self) -> dict:
        return {"size": self.size, "fired": self.fired.cpu().clone(), "birth": self.birth.cpu().clone(),
                "grown_ever": self.grown_ever.cpu().clone(), "reliable": self.reliable.cpu().clone()}


class ExplorationTracker:
    """Tracks, per layer, every position ever active and the life of every grown weight.

    - ``fired``: OR of all masks the layer has had (initial mask included); Rs = |F| / N.
    - ``birth``: step at which an active weight was grown (-1 for weights of the initial mask).
    - ``grown_ever`` / ``reliable``: positions ever grown, and those whose |w| exceeded the layer's
      drop threshold at some update while active ("reliably explored").

    Layers executed sparse are tracked by :class:`IndexTrack` (``index``) with the same semantics:
    :meth:`record_index` books their updates from (index, value) arrays.
    """

    def __init__(self, masks: dict[str, torch.Tensor],
                 index_layers: dict[str, tuple[int, torch.Tensor]] | None = None) -> None:
        """``masks``: dense bool masks of masked layers; ``index_layers``: {name: (size, sorted
        active flat indices)} of sparse layers."""
        self.index = {n: IndexTrack.start(size, active) for n, (size, active) in (index_layers or {}).items()}
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
        fired = sum(int(f.sum()) for f in self.fired.values()) + sum(t.fired.numel() for t in self.index.values())
        total = sum(f.numel() for f in self.fired.values()) + sum(t.size for t in self.index.values())
        return fired / total

    def layer_rate(self, name: str) -> float:
        if name in self.index:
            return self.index[name].fired.numel() / self.index[name].size
        f = self.fired[name]
        return int(f.sum()) / f.numel()

    def fired_indices(self, name: str) -> torch.Tensor:
        """Sorted int64 flat indices of every position of ``name`` ever active."""
        if name in self.index:
            return self.index[name].fired
        return self.fired[name].reshape(-1).nonzero().squeeze(1)

    def fired_mask(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """Dense bool fired mask of ``name`` (materialised for sparse layers: O(size))."""
        if name not in self.index:
            return self.fired[name]
        return mask_from_indices(self.index[name].fired, shape)

    def _book_lifetimes(self, step: int, births: torch.Tensor) -> None:
        born = births[births >= 0]
        if born.numel():
            values, counts = torch.unique(step - born, return_counts=True)
            self.lifetimes.update(dict(zip(values.tolist(), counts.tolist())))

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
    def record_index(self, name: str, step: int, values: torch.Tensor, active: torch.Tensor,
                     dropped_local: torch.Tensor, grown: torch.Tensor, src: torch.Tensor) -> None:
        """Book one update of a sparse layer: ``values``/``active`` before the update (CSR order),
        ``dropped_local`` positions into them, ``grown`` sorted flat indices, ``src`` the new
        entries' old positions (-1 for grown). Same bookkeeping as :meth:`record`."""
        track = self.index[name]
        if dropped_local.numel() > 0:
            mags = values.detach().abs()
            threshold = mags[dropped_local].max()
            above = active[mags > threshold]
            track.reliable = union_sorted(track.reliable, above[isin_sorted(track.grown_ever, above)])
            self._book_lifetimes(step, track.birth[dropped_local])
        self._book_survival(track.birth, dropped_local)
        birth = remap(track.birth, src.to(track.birth.device))
        birth[src < 0] = step
        track.birth = birth
        track.grown_ever = union_sorted(track.grown_ever, grown)
        track.fired = union_sorted(track.fired, grown)

    @torch.no_grad()
    def record(self, name: str, step: int, weight: torch.Tensor, dropped: torch.Tensor,
               grown: torch.Tensor, new_mask: torch.Tensor, old_mask: torch.Tensor) -> None:
        """Book one layer's update; call before the dropped weights are zeroed."""
        birth = self.birth[name].view(-1)
        if dropped.numel() > 0:
            mags = weight.detach().reshape(-1).abs()
            threshold = mags[dropped].max()
            self.reliable[name] |= old_mask & self.grown_ever[name] & (weight.detach().abs() > threshold)
            self._book_lifetimes(step, birth[dropped])
        self._book_survival(birth, dropped)
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
        grown = sum(int(g.sum()) for g in self.grown_ever.values()) + sum(
            t.grown_ever.numel() for t in self.index.values())
        if grown == 0:
            return None
        reliable = sum(int(r.sum()) for r in self.reliable.values()) + sum(
            t.reliable.numel() for t in self.index.values())
        return reliable / grown

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
            "index": {n: t.state_dict() for n, t in self.index.items()},
            "lifetimes": {int(k): int(v) for k, v in self.lifetimes.items()},
            "grown_checked": self.grown_checked,
            "grown_survived": self.grown_survived,
            "last_update_step": self.last_update_step,
        }

    def load_state_dict(self, state: dict, active: dict[str, torch.Tensor] | None = None) -> None:
        """Restore from :meth:`state_dict`. A layer saved in the other execution mode is converted;
        that needs ``active`` ({name: sorted active flat indices}, the restored topology)."""
        saved_index = state.get("index", {})
        for key in ("fired", "birth", "grown_ever", "reliable"):
            mine = getattr(self, key)
            for n in mine:
                if n in state[key]:
                    mine[n] = state[key][n].to(mine[n].device)
                else:  # saved as an IndexTrack
                    mine[n] = _dense_from_track(saved_index[n], key, mine[n], (active or {}).get(n))
        for n, track in self.index.items():
            dev = track.fired.device
            if n in saved_index:
                saved = saved_index[n]
                if int(saved["size"]) != track.size:
                    raise ValueError(f"exploration state of {n!r} has size {saved['size']}, the layer {track.size}")
                self.index[n] = IndexTrack(track.size, *(saved[k].to(dev) for k in
                                                         ("fired", "birth", "grown_ever", "reliable")))
            else:  # saved dense (masked execution)
                flat = {k: state[k][n].reshape(-1) for k in ("fired", "birth", "grown_ever", "reliable")}
                act = (active or {})[n].to(flat["birth"].device)
                self.index[n] = IndexTrack(track.size, flat["fired"].nonzero().squeeze(1).to(dev),
                                           flat["birth"][act].to(dev),
                                           flat["grown_ever"].nonzero().squeeze(1).to(dev),
                                           flat["reliable"].nonzero().squeeze(1).to(dev))
        self.lifetimes = Counter({int(k): int(v) for k, v in state["lifetimes"].items()})
        self.grown_checked = int(state["grown_checked"])
        self.grown_survived = int(state["grown_survived"])
        self.last_update_step = int(state["last_update_step"])


def _dense_from_track(saved: dict, key: str, like: torch.Tensor, active: torch.Tensor | None) -> torch.Tensor:
    """One dense tracker tensor (``fired``, ``birth``, ...) rebuilt from a saved :class:`IndexTrack`."""
    if key == "birth":
        out = torch.full((like.numel(),), -1, dtype=like.dtype, device=like.device)
        if active is None:
            raise ValueError("converting a sparse exploration state to masked needs the active indices")
        out[active.to(like.device)] = saved["birth"].to(like.device, like.dtype)
        return out.view(like.shape)
    return mask_from_indices(saved[key], like.shape, like.device)
