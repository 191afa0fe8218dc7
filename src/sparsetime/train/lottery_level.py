"""One level of a lottery-ticket experiment as a runner method (``sparsity.method=lth``).

Iterative magnitude pruning (Frankle & Carbin): level 0 trains the dense network and keeps its
weights at the rewind step k (BN statistics included) in its checkpoint; level L >= 1 prunes a
fraction p of the weights level L-1 left, by magnitude of level L-1's trained weights, and retrains
the survivors for steps k..T (``start_step`` = k, the schedule positioned at k), starting from

- ``mode="weights"``: the step-k weights (weight rewinding; k = 0 is the original hypothesis);
- ``mode="lr"``: the trained weights, schedule replayed from k (learning-rate rewinding);
- ``mode="finetune"``: the trained weights at the final learning rate (the experiment driver sets
  it, without warm-up).

All three retrain T - k steps, so they compare at equal retraining time (Renda et al. 2020).
Options: ``level``, ``levels``, ``fraction`` p, ``rewind_step`` k, ``mode``, ``scope``, ``previous``
(level L-1's run directory) and, for the controls of level L >= 1, ``control``: ``"reinit"`` (the
ticket's mask on freshly drawn weights) or ``"random_mask"`` (the step-k weights under a random
mask with the ticket's per-layer counts), both retrained like weight rewinding. The ticket options
of :mod:`.ticket_start` (``criterion``, ``restart``, ``pruned``, ``perturb``, ``noise_scale``,
``random_label_epochs``, ``supermask_eval``) vary which weights are kept, what the survivors
restart from and what pruned weights hold (Zhou et al. 2019; Frankle et al. 2020b). Experiments are
driven by :mod:`sparsetime.experiments.lottery` (``sparsetime lth``); the math lives in
:mod:`sparsetime.pruning.lottery`.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsetime.core.sparsifier import DynamicSparsity
from sparsetime.core.state import masks_from_state
from sparsetime.pruning import prune_level, random_masks, random_reinit, rewind, snapshot, ticket_scores
from sparsetime.pruning.masking import fill_pruned
from sparsetime.pruning.supermask import mask_accuracy

from .checkpoint import load_checkpoint
from .config import SparsityConfig
from .context import SparsifierContext
from .init_masks import Masks, full_masks, static_sparsifier
from .method_checks import SCOPES, check_choice, check_int, check_open_fraction, check_options
from .methods import register_method
from .random_labels import pretrain_random_labels
from .ticket_start import TICKET_DEFAULTS, changes_start, check_ticket_options, start_ticket, ticket_options

log = logging.getLogger(__name__)

LTH_MODES = ("weights", "lr", "finetune")
CONTROLS = ("reinit", "random_mask")
LTH_DEFAULTS = {"level": 0, "levels": 0, "fraction": 0.2, "rewind_step": 0, "mode": "weights", "scope": "global",
                "previous": None}
#: options a level may have besides LTH_DEFAULTS; absent unless given, so that run names stay as they were
LTH_OPTIONAL = {"control": None, **TICKET_DEFAULTS}


def lth_options(s: SparsityConfig) -> dict[str, Any]:
    """The level's options with the defaults filled in."""
    return {**LTH_DEFAULTS, **LTH_OPTIONAL, **s.options}


def lth_start_step(s: SparsityConfig) -> int:
    """Levels >= 1 (and their controls) start at the rewind step k; level 0 trains from step 0."""
    o = lth_options(s)
    return int(o["rewind_step"]) if o["level"] >= 1 else 0


def control_seed(seed: int, level: int) -> int:
    """Seed of a control's random weights or mask, from (seed, level): never the run's own init seed."""
    return (seed * 1_000_003 + 1_000 + level) % 2**63


class LotteryLevel:
    """Static-mask training of one lottery-ticket level; keeps the rewind weights (step k) in its state.

    ``frozen`` ({name: values}) holds pruned weights at those values instead of zero (``pruned:
    frozen``); ``extra`` are figures for the run summary (e.g. ``supermask_test_accuracy``).
    """

    def __init__(self, sparsity: DynamicSparsity, model: nn.Module, rewind_step: int,
                 rewind_state: dict[str, torch.Tensor] | None, frozen: dict[str, torch.Tensor] | None = None,
                 extra: dict[str, float] | None = None) -> None:
        self.sparsity, self.model, self.rewind_step = sparsity, model, rewind_step
        self.rewind, self.frozen, self.extra = rewind_state, frozen, dict(extra or {})
        if frozen is not None:
            fill_pruned(model, self.masks, frozen)

    @property
    def masks(self) -> Masks:
        """The level's (fixed) masks."""
        return self.sparsity.masks

    @property
    def update_history(self) -> None:
        """A fixed mask: no topology updates."""
        return None

    def step(self) -> None:
        """Re-apply the masks; snapshot the weights once step k is reached (level 0)."""
        self.sparsity.step()
        if self.frozen is not None:
            fill_pruned(self.model, self.masks, self.frozen)
        if self.rewind is None and self.sparsity.step_count >= self.rewind_step:
            self.rewind = {k: v.cpu() for k, v in snapshot(self.model).items()}

    def density(self) -> float:
        """Realised density of the level's masks."""
        return self.sparsity.density()

    def current_densities(self) -> dict[str, float]:
        """{weight name: realised density} of the level's masks, for FLOPs; 1 with frozen pruned weights
        (they take part in every forward pass)."""
        if self.frozen is not None:
            return {n: 1.0 for n in self.masks}
        return self.sparsity.current_densities()

    def summary_extra(self) -> dict[str, float]:
        """The level's own figures for the run summary."""
        return dict(self.extra)

    def layer_report(self) -> list[dict[str, Any]]:
        """Per layer: the level's fixed mask, its density and Rs (a static mask's Rs is its density)."""
        return self.sparsity.layer_report()

    def exploration_rate(self) -> float:
        """Rs of a static mask: its density."""
        return self.sparsity.exploration_rate()

    def state_dict(self) -> dict[str, Any]:
        """Masks and counters (``dynamic``) plus the rewind weights (``rewind``, None before step k); the frozen
        pruned weights (``frozen``) and summary figures (``extra``) only when there are any."""
        state = {"dynamic": self.sparsity.state_dict(), "rewind": self.rewind}
        if self.frozen is not None:
            state["frozen"] = self.frozen
        if self.extra:
            state["extra"] = self.extra
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore masks, counters and rewind weights."""
        if not isinstance(state, Mapping) or "dynamic" not in state or "rewind" not in state:
            raise ValueError("not a lottery-ticket level state (expected keys 'dynamic' and 'rewind')")
        self.sparsity.load_state_dict(state["dynamic"])
        self.rewind = state["rewind"]
        self.frozen = state.get("frozen")
        if self.frozen is not None:  # loading the masks zeroed the pruned weights: back to their frozen values
            fill_pruned(self.model, self.masks, self.frozen)
        self.extra = dict(state.get("extra") or {})


def _previous_level(previous: Path, level: int) -> dict[str, Any]:
    """The finished run of level ``level - 1``: its checkpoint (model, sparsifier with rewind weights)."""
    if not (previous / "summary.json").is_file():
        raise ValueError(f"lottery level {level} needs the finished run of level {level - 1} at "
                         f"sparsity.options.previous = {str(previous)!r}; it has no summary.json")
    state = load_checkpoint(previous / "checkpoint.pt")
    prev = state["sparsifier"]
    if not isinstance(prev, Mapping) or prev.get("rewind") is None:
        raise ValueError(f"{str(previous)!r} is not a finished lottery-ticket level (no rewind weights)")
    return state


def _build_lth(ctx: SparsifierContext) -> LotteryLevel:
    s = ctx.sparsity
    o = lth_options(s)
    k, level, control = o["rewind_step"], o["level"], o["control"]
    init = snapshot(ctx.model)  # the run's own initialisation: level 0's step-0 weights (same seed and model)
    if k >= ctx.total_steps:
        raise ValueError(f"sparsity.options.rewind_step = {k} is beyond training; allowed: 0 <= rewind_step < "
                         f"{ctx.total_steps} (the run's total steps)")
    if ctx.resuming:
        return LotteryLevel(static_sparsifier(ctx, full_masks(ctx.model, s)), ctx.model, k, None)
    if level == 0:
        extra = {}
        if o["random_label_epochs"]:
            extra["random_label_flops"] = pretrain_random_labels(ctx.model, ctx.train_batches, o["random_label_epochs"],
                                                                 ctx.optimizer, ctx.loss_fn, ctx.seed)
        rewind_state = {n: v.cpu() for n, v in snapshot(ctx.model).items()} if k == 0 else None
        return LotteryLevel(static_sparsifier(ctx, full_masks(ctx.model, s)), ctx.model, k, rewind_state, extra=extra)
    previous = Path(str(o["previous"]))
    state = _previous_level(previous, level)
    prev = state["sparsifier"]
    device = next(iter(ctx.model.parameters())).device
    ctx.model.load_state_dict(state["model"])  # the previous level's trained weights
    prev_masks = {n: m.to(device) for n, m in masks_from_state(prev["dynamic"]).items()}
    generator = torch.Generator().manual_seed(ctx.seed * 1_000_003 + level)
    params = dict(ctx.model.named_parameters())
    scores = None if o["criterion"] == "large_final" else ticket_scores(
        o["criterion"], prev["rewind"], {n: params[n] for n in prev_masks}, generator)
    masks = prune_level(ctx.model, prev_masks, o["fraction"], o["scope"], generator=generator, scores=scores)
    extra = {}
    if o["supermask_eval"]:  # the ticket's mask on its random init, untrained
        extra["supermask_test_accuracy"] = mask_accuracy(ctx.model, masks, init, ctx.test_batches())
    if o["mode"] == "weights" or control is not None:
        rewind(ctx.model, prev["rewind"])  # back to step k, BN statistics included
    if control == "reinit":
        random_reinit(ctx.model, masks, seed=control_seed(ctx.seed, level))
    elif control == "random_mask":
        masks = random_masks(masks, seed=control_seed(ctx.seed, level))
    frozen = start_ticket(ctx.model, masks, init, o, control_seed(ctx.seed, level))
    log.info("lottery level %d%s: pruned %g of the active weights of %s by %s, restart %s, mode %s, training from "
             "step %d", level, f" ({control} control)" if control else "", o["fraction"], previous, o["criterion"],
             o["restart"], o["mode"], k)
    return LotteryLevel(static_sparsifier(ctx, masks), ctx.model, k, dict(prev["rewind"]), frozen, extra)


def _check_lth(s: SparsityConfig) -> None:
    if "controls" in s.options:
        raise ValueError("sparsity.options.controls lists the controls of a whole experiment; run it with "
                         "`sparsetime lth` (one level takes sparsity.options.control = reinit|random_mask)")
    check_options("lth", s.options, set(LTH_DEFAULTS) | set(LTH_OPTIONAL))
    o = lth_options(s)
    check_open_fraction("sparsity.options.fraction", o["fraction"])
    check_int("sparsity.options.rewind_step", o["rewind_step"], 0)
    check_int("sparsity.options.level", o["level"], 0)
    check_int("sparsity.options.levels", o["levels"], 0)
    check_choice("sparsity.options.mode", o["mode"], LTH_MODES)
    check_choice("sparsity.options.scope", o["scope"], SCOPES)
    check_ticket_options(s.options)
    if changes_start(s.options) and (o["mode"] != "weights" or o["control"] is not None):
        raise ValueError("sparsity.options.restart and perturb change the rewound weights; allowed only with "
                         f"mode = weights and no control (mode is {o['mode']!r}, control {o['control']!r})")
    if o["level"] > 0 and not o["previous"]:
        raise ValueError(f"sparsity.options.level = {o['level']} needs sparsity.options.previous (the previous "
                         "level's run directory); run all levels with `sparsetime lth`")
    if o["control"] is not None:
        check_choice("sparsity.options.control", o["control"], CONTROLS)
        if o["level"] < 1:
            raise ValueError("sparsity.options.control needs sparsity.options.level >= 1 (a control of a pruned "
                             "level); level 0 is the dense network")


register_method("lth", _build_lth, fixed={"update_interval": None}, check=_check_lth, start_step=lth_start_step,
                summary_extra=LotteryLevel.summary_extra,
                description="one lottery-ticket level (run every level with `sparsetime lth`)")
