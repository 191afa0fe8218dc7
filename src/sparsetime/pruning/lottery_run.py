"""The lottery-ticket procedure: iterative magnitude pruning with rewinding (SPEC §6).

Level 0 trains the dense network (snapshotting it at the rewind step k); each later level prunes
a fraction p of the still-active weights of the previous level's trained network, prepares the
survivors according to ``mode`` and retrains from step k:

- ``"weights"``: weight rewinding, survivors reset to their values at step k (k = 0 is the
  original lottery ticket hypothesis), BN statistics included, schedule replayed from k;
- ``"lr"``: learning-rate rewinding, survivors keep their trained values, schedule replayed from k;
- ``"finetune"``: survivors keep their trained values, trained from k at the final learning rate.

Training is the caller's: ``train_fn(model, start_step, masks, *, stop_step, lr_mode, run_name)``
trains ``model`` in place from ``start_step`` to ``stop_step`` (None: to the end of training),
keeping the weights outside ``masks`` at zero (``masks`` is None for the dense level 0), with the
learning-rate schedule replayed (``lr_mode="schedule"``) or fixed at its final value
(``lr_mode="final"``). ``run_name`` ("level_03", ...) names the level's own run, so a trainer can
resume a level that was interrupted. With ``state_path`` the procedure saves its state after every
level and a new object with the same arguments continues where the last one stopped.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._common import (Masks, atomic_torch_save, check_fraction, check_int, check_scope, make_generator,
                      parameters_by_name, selected_names)
from .lottery import prune_level, random_masks, random_reinit, rewind, snapshot
from .masking import apply_masks, full_masks

logger = logging.getLogger(__name__)

MODES = ("weights", "lr", "finetune")
CONTROLS = ("reinit", "random_mask")
TrainFn = Callable[..., Any]
_FORMAT = 1


@dataclass(frozen=True)
class LevelRecord:
    """What one finished level trained: its run name and its realised mask density."""

    level: int
    run_name: str
    density: float
    active: int
    total: int


def _cpu(masks: Masks) -> Masks:
    return {n: m.detach().cpu().clone() for n, m in masks.items()}


class LotteryTicket:
    """Iterative magnitude pruning over ``levels`` pruning levels (``levels + 1`` trainings)."""

    def __init__(self, model: nn.Module, train_fn: TrainFn, *, total_steps: int, levels: int,
                 fraction: float = 0.2, rewind_step: int = 0, mode: str = "weights", scope: str = "global",
                 state_path: str | os.PathLike[str] | None = None, seed: int = 0, allow_collapse: bool = False,
                 dense_layers: Sequence[str] | None = None, dense_first: bool = False,
                 dense_last: bool = False, extra_layers: Sequence[str] | None = None) -> None:
        if not callable(train_fn):
            raise ValueError(f"train_fn must be callable, got {train_fn!r}")
        total_steps = check_int(total_steps, "total_steps", minimum=1)
        check_int(rewind_step, "rewind_step", minimum=0)
        if rewind_step >= total_steps:
            raise ValueError(f"rewind_step {rewind_step} is beyond training: it must be in [0, total_steps) = "
                             f"[0, {total_steps})")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        names = selected_names(model, dense_layers, dense_first, dense_last, extra_layers)
        self.model, self.train_fn = model, train_fn
        self.params = dict(zip(names, parameters_by_name(model, names)))
        self.allow_collapse = bool(allow_collapse)
        self.state_path = os.fspath(state_path) if state_path is not None else None
        self.config: dict[str, Any] = {
            "total_steps": total_steps, "levels": check_int(levels, "levels", minimum=0),
            "fraction": check_fraction(fraction), "rewind_step": int(rewind_step), "mode": mode,
            "scope": check_scope(scope), "seed": check_int(seed, "seed"), "names": list(names)}
        self.generator = make_generator(seed=seed)
        self._state: dict[str, Any] | None = None

    # ----- state -------------------------------------------------------------------------------
    def _new_state(self) -> dict[str, Any]:
        init = snapshot(self.model)
        return {"format": _FORMAT, "config": dict(self.config), "init": init,
                "rewind": init if self.config["rewind_step"] == 0 else None,
                "levels_done": 0, "masks": [_cpu(full_masks(self.params))], "trained": None, "records": [],
                "generator_state": self.generator.get_state()}

    def _load_state(self) -> dict[str, Any] | None:
        if self.state_path is None or not os.path.exists(self.state_path):
            return None
        state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"{self.state_path!r} is not a lottery-ticket state file (format {_FORMAT})")
        saved = state["config"]
        diff = sorted(k for k in set(saved) | set(self.config) if saved.get(k) != self.config.get(k))
        if diff:
            raise ValueError(f"{self.state_path!r} was written with different settings {diff}: saved "
                             f"{ {k: saved.get(k) for k in diff} }, now { {k: self.config.get(k) for k in diff} }")
        self.generator.set_state(state["generator_state"])
        logger.info("lottery ticket: resuming from %s after %d finished level(s)", self.state_path,
                    state["levels_done"])
        return state

    def _save(self) -> None:
        assert self._state is not None
        self._state["generator_state"] = self.generator.get_state()
        if self.state_path is not None:
            atomic_torch_save(self._state, self.state_path)

    def _ensure_state(self) -> dict[str, Any]:
        if self._state is None:
            loaded = self._load_state()
            self._state = loaded if loaded is not None else self._new_state()
            if loaded is None:
                self._save()
        return self._state

    def _device_masks(self, masks: Masks) -> Masks:
        return {n: m.to(self.params[n].device) for n, m in masks.items()}

    # ----- public API ---------------------------------------------------------------------------
    @property
    def records(self) -> list[LevelRecord]:
        """Records of the finished levels."""
        return [LevelRecord(**r) for r in (self._state or {}).get("records", [])]

    def level_masks(self, level: int) -> Masks:
        """The masks level ``level`` trains with (level 0: all True); available once level-1 is done."""
        state = self._ensure_state()
        check_int(level, "level", minimum=0)
        if level >= len(state["masks"]):
            raise ValueError(f"masks of level {level} are not computed yet; levels available: "
                             f"0..{len(state['masks']) - 1}")
        return self._device_masks(state["masks"][level])

    def run(self) -> list[LevelRecord]:
        """Train every level not yet finished (resuming from ``state_path``); returns all level records."""
        state = self._ensure_state()
        cfg = self.config
        k = cfg["rewind_step"]
        for level in range(state["levels_done"], cfg["levels"] + 1):
            run_name = f"level_{level:02d}"
            masks = self._device_masks(state["masks"][level])
            if level == 0:
                if state["rewind"] is None:
                    rewind(self.model, state["init"])
                    self.train_fn(self.model, 0, None, stop_step=k, lr_mode="schedule", run_name=run_name)
                    state["rewind"] = snapshot(self.model)
                    self._save()
                else:
                    rewind(self.model, state["rewind"])
                self.train_fn(self.model, k, None, stop_step=None, lr_mode="schedule", run_name=run_name)
            else:
                source = state["rewind"] if cfg["mode"] == "weights" else state["trained"]
                rewind(self.model, source, masks)
                lr_mode = "final" if cfg["mode"] == "finetune" else "schedule"
                self.train_fn(self.model, k, {n: m.clone() for n, m in masks.items()}, stop_step=None,
                              lr_mode=lr_mode, run_name=run_name)
                apply_masks(self.model, masks)
            active = sum(int(m.sum()) for m in masks.values())
            total = sum(m.numel() for m in masks.values())
            state["records"].append({"level": level, "run_name": run_name, "density": active / total,
                                     "active": active, "total": total})
            state["trained"] = snapshot(self.model)
            if level < cfg["levels"]:
                new = prune_level(self.model, masks, cfg["fraction"], cfg["scope"], generator=self.generator,
                                  allow_collapse=self.allow_collapse)
                state["masks"].append(_cpu(new))
            state["levels_done"] = level + 1
            self._save()
            logger.info("lottery ticket: level %d done (density %.4f)", level, active / total)
        return self.records

    @property
    def masks(self) -> Masks:
        """Masks of the last computed level (the ticket after :meth:`run`)."""
        state = self._ensure_state()
        return self._device_masks(state["masks"][max(state["levels_done"] - 1, 0)])

    def run_control(self, level: int, kind: str, seed: int = 0) -> Masks:
        """Train a control for ``level``'s ticket and return its masks; ``run_name`` gets a ``_<kind>`` suffix.

        ``"reinit"``: the ticket's mask on freshly drawn weights (``random_reinit``);
        ``"random_mask"``: the rewound weights under a random mask with the same per-layer counts.
        Both train from the rewind step with the replayed schedule, like the ticket.
        """
        if kind not in CONTROLS:
            raise ValueError(f"control kind must be one of {CONTROLS}, got {kind!r}")
        check_int(level, "level", minimum=1)
        masks = self.level_masks(level)
        state = self._ensure_state()
        if state["rewind"] is None:
            raise ValueError("the rewind point is not reached yet; run level 0 first")
        if kind == "reinit":
            rewind(self.model, state["rewind"])
            random_reinit(self.model, masks, seed=seed)
        else:
            masks = random_masks(masks, seed=seed)
            rewind(self.model, state["rewind"], masks)
        self.train_fn(self.model, self.config["rewind_step"], {n: m.clone() for n, m in masks.items()},
                      stop_step=None, lr_mode="schedule", run_name=f"level_{level:02d}_{kind}")
        apply_masks(self.model, masks)
        return masks
