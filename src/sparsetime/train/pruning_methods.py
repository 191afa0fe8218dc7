"""Dense-to-sparse baselines as runner methods (SPEC §6): pruning at initialisation, GMP, lottery levels.

Registered ``sparsity.method`` values:

- ``snip``, ``grasp``, ``synflow``, ``random``, ``magnitude``: masks computed once before training
  (from ``ctx.train_batches()`` where the score needs data), then static sparse training through
  ``DynamicSparsity(initial_masks=..., update_interval=None)``. ``sparsity.options`` holds the score
  options (``num_batches``, ``temperature``, ``rounds``) and ``scope`` (global|layer). Scoring is
  skipped on resume (the checkpoint restores the masks).
- ``gmp``: :class:`~sparsetime.pruning.GradualMagnitudePruner` from dense to ``sparsity.density``;
  options ``start``/``end`` (fractions of training, default 0.25/0.75: prune in the middle and leave
  the last quarter to recover, after Zhu & Gupta), ``scope``, ``initial_density``; the pruning
  interval ΔT is ``sparsity.update_interval``. The last pruning step is snapped down to
  ``start_step + n ΔT``; a schedule with no pruning step is a ValueError. FLOPs: the trainer's
  per-epoch trapezoid over the realised density, an approximation of the integral of 3 f_S(t).
- ``lth``: one level of a lottery-ticket experiment (driven by ``sparsetime lth``); options
  ``level``, ``fraction`` p, ``rewind_step`` k, ``mode`` (weights|lr|finetune), ``scope``,
  ``levels`` and ``previous`` (the previous level's run directory). Level 0 trains dense and keeps
  the weights at step k in its checkpoint; level L prunes p of the previous level's surviving
  weights by magnitude and trains from the rewound (``weights``) or trained (``lr``, ``finetune``)
  weights. Levels >= 1 in modes ``weights`` and ``lr`` expose ``start_at_step = k``: the trainer runs
  steps k..T with the schedule positioned at k (SPEC §6). ``finetune`` trains all T steps at the
  final learning rate.

``sparsity.init_mask`` seeds set/rigl/snfs/static runs: :func:`initial_masks`.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsetime.core.index_sets import mask_from_indices
from sparsetime.core.selection import select_sparse_parameters

from .checkpoint import load_checkpoint
from .config import SparsityConfig
from .methods import Sparsifier, SparsifierContext, register_method

log = logging.getLogger(__name__)

PRUNE_AT_INIT = ("snip", "grasp", "synflow", "random", "magnitude")
SCOPES = ("global", "layer")
LTH_MODES = ("weights", "lr", "finetune")
GMP_DEFAULTS = {"start": 0.25, "end": 0.75, "scope": "global", "initial_density": 1.0}
LTH_DEFAULTS = {"level": 0, "levels": 0, "fraction": 0.2, "rewind_step": 0, "mode": "weights", "scope": "global",
                "previous": None}
# score-function keywords the runner fills itself (not user options)
_RUNNER_FILLED = {"generator", "seed", "masks", "device", "loss_fn", "density", "scope", "input_shape",
                  "dense_layers", "dense_first", "dense_last", "extra_layers"}
Masks = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------- helpers

def _selection(s: SparsityConfig) -> dict[str, Any]:
    return {"dense_layers": s.dense_layers or None, "dense_first": s.dense_first, "dense_last": s.dense_last}


def score_option_names(method: str) -> list[str]:
    """User options ``sparsity.options`` may hold for pruning-at-init ``method`` (besides ``scope``)."""
    from sparsetime.pruning import score_options

    return sorted(set(score_options(method)) - _RUNNER_FILLED)


def _check_options(method: str, options: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"sparsity.options {unknown} are not options of method {method!r}; "
                         f"allowed: {', '.join(sorted(allowed)) or 'none'}")


def _check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{key} = {value!r} is invalid; allowed: {', '.join(allowed)}")


def _check_open_fraction(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ValueError(f"{key} = {value!r} is invalid; allowed: a number strictly between 0 and 1")


def _check_int(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} = {value!r} is invalid; allowed: an integer >= {minimum}")


def full_masks(model: nn.Module, s: SparsityConfig) -> Masks:
    """All-True masks over the masked set (ValueError for a model with no sparsifiable layer)."""
    params = select_sparse_parameters(model, **_selection(s))
    return {n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()}


def pruning_masks(ctx: SparsifierContext, method: str, options: Mapping[str, Any] | None = None) -> Masks:
    """Masks of pruning-at-init ``method`` at ``ctx.sparsity.density``, scored on ``ctx.train_batches()``.

    ``options`` may hold ``scope`` and the method's score options; ties and random scores use ``ctx.seed``.
    """
    from sparsetime.pruning import prune

    _check_choice("pruning method", method, PRUNE_AT_INIT)
    options = dict(options or {})
    scope = options.pop("scope", "global")
    _check_choice("scope", scope, SCOPES)
    _check_options(method, options, set(score_option_names(method)))
    if method in ("snip", "grasp"):
        options["loss_fn"] = ctx.loss_fn
    batches = ctx.train_batches() if method in ("snip", "grasp", "synflow") else None  # synflow: input shape
    s = ctx.sparsity
    masks = prune(ctx.model, method, s.density, batches=batches, scope=scope, seed=ctx.seed,
                  **_selection(s), **options)
    log.info("%s masks at density %g (%s scope) computed before training", method, s.density, scope)
    return masks


def load_masks(path: str | Path) -> Masks:
    """Masks from a masks file ({name: bool tensor}) or a run directory's ``checkpoint.pt``."""
    path = Path(path)
    file = path / "checkpoint.pt" if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"no masks at {str(path)!r}: expected a masks file or a run directory with checkpoint.pt")
    state = torch.load(file, map_location="cpu", weights_only=True)
    for key in ("sparsifier", "dynamic", "masks"):  # run checkpoint -> lth level state -> DynamicSparsity state
        if isinstance(state, Mapping) and key == "masks" and isinstance(state.get("active"), Mapping):
            state = _masks_with_active(state)  # layers a sparse-execution run stored as active indices
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not state or not all(
            isinstance(m, torch.Tensor) and m.dtype == torch.bool for m in state.values()):
        raise ValueError(f"{str(file)!r} holds no masks (a mapping of parameter name -> bool tensor)")
    return {str(n): m for n, m in state.items()}


def check_init_mask(value: str) -> None:
    """ValueError unless ``value`` is a pruning-at-init method or an existing masks file / run directory."""
    if value in PRUNE_AT_INIT:
        return
    path = Path(value)
    if not (path.is_file() or (path / "checkpoint.pt").is_file()):
        raise ValueError(f"sparsity.init_mask = {value!r} is neither a pruning method ({', '.join(PRUNE_AT_INIT)}) "
                         "nor an existing masks file or run directory with checkpoint.pt")


def _masks_with_active(state: Mapping) -> dict[str, Any]:
    """A DynamicSparsity state whose ``masks`` also cover the layers saved as sorted active indices."""
    masks = dict(state.get("masks") or {})
    shapes = state.get("shapes") or {}
    for name, flat in state["active"].items():
        if name not in shapes or not isinstance(flat, torch.Tensor):
            raise ValueError(f"sparsifier state has active indices for {name!r} but no shape for it")
        masks[name] = mask_from_indices(flat, tuple(shapes[name]), "cpu")
    return {**state, "masks": masks}


def initial_masks(ctx: SparsifierContext, options: Mapping[str, Any] | None = None) -> Masks:
    """The masks ``sparsity.init_mask`` names, for ``DynamicSparsity(initial_masks=...)``.

    A pruning method is scored on the model at initialisation (``options``: ``scope`` and score
    options, from ``sparsity.options.init_options``); a path is loaded (the weights are not: with
    the same seed and model the run starts from the same initial weights). On resume all-True
    placeholders are returned, since the checkpoint restores the masks.
    """
    s = ctx.sparsity
    if ctx.resuming:
        return full_masks(ctx.model, s)
    if s.init_mask in PRUNE_AT_INIT:
        return pruning_masks(ctx, s.init_mask, options)
    if options:
        raise ValueError(f"sparsity.options.init_options {dict(options)} only apply when sparsity.init_mask is a "
                         f"pruning method ({', '.join(PRUNE_AT_INIT)}), not a path")
    masks = load_masks(s.init_mask)
    device = next(iter(ctx.model.parameters())).device
    return {n: m.to(device) for n, m in masks.items()}


def _static(ctx: SparsifierContext, masks: Masks) -> Any:
    import sparsetime as st

    return st.DynamicSparsity(ctx.model, ctx.optimizer, None, initial_masks=masks, update_interval=None,
                              sparse_init=False, seed=ctx.seed, execution=ctx.sparsity.execution,
                              **_selection(ctx.sparsity))


# ----------------------------------------------------------------------------- pruning at initialisation

def _build_prune_at_init(method: str):
    def build(ctx: SparsifierContext) -> Sparsifier:
        s = ctx.sparsity
        masks = full_masks(ctx.model, s) if ctx.resuming else pruning_masks(ctx, method, s.options)
        return _static(ctx, masks)
    return build


def _check_prune_at_init(method: str):
    def check(s: SparsityConfig) -> None:
        _check_options(method, s.options, set(score_option_names(method)) | {"scope"})
        _check_choice("sparsity.options.scope", s.options.get("scope", "global"), SCOPES)
    return check


# ----------------------------------------------------------------------------- gradual magnitude pruning

class GmpSparsifier:
    """Adapter of :class:`~sparsetime.pruning.GradualMagnitudePruner` to the runner's Sparsifier protocol."""

    def __init__(self, pruner: Any) -> None:
        self.pruner = pruner

    @property
    def masks(self) -> Masks:
        """Current masks (shrinking over training)."""
        return self.pruner.masks

    def step(self) -> None:
        """Prune on pruning steps; re-zero pruned weights and optimizer state every step."""
        self.pruner.step()

    def density(self) -> float:
        """Realised density of the current masks."""
        return float(self.pruner.density)

    def state_dict(self) -> dict[str, Any]:
        """The pruner's state (masks, step, schedule)."""
        return self.pruner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the pruner's state."""
        self.pruner.load_state_dict(state)


def gmp_steps(total_steps: int, interval: int, start: float, end: float) -> tuple[int, int]:
    """(start_step, end_step) of GMP: start at ``round(start T)``, end at the last pruning step <= ``round(end T)``."""
    start_step, target_end = round(start * total_steps), round(end * total_steps)
    n = (target_end - start_step) // interval
    if n < 1:
        raise ValueError(f"sparsity.density is unreachable by the gmp schedule: no pruning step between step "
                         f"{start_step} (start={start}) and step {target_end} (end={end}) of {total_steps} with "
                         f"sparsity.update_interval={interval}; lower update_interval or widen start/end")
    return start_step, start_step + n * interval


def _build_gmp(ctx: SparsifierContext) -> Sparsifier:
    from sparsetime.pruning import GradualMagnitudePruner

    s = ctx.sparsity
    o = {**GMP_DEFAULTS, **s.options}
    start_step, end_step = gmp_steps(ctx.total_steps, s.update_interval, o["start"], o["end"])
    pruner = GradualMagnitudePruner(ctx.model, ctx.optimizer, s.density, start_step, end_step, s.update_interval,
                                    initial_density=o["initial_density"], scope=o["scope"],
                                    total_steps=ctx.total_steps, seed=ctx.seed, **_selection(s))
    log.info("gmp: density %g -> %g between steps %d and %d every %d steps", o["initial_density"], s.density,
             start_step, end_step, s.update_interval)
    return GmpSparsifier(pruner)


def _check_gmp(s: SparsityConfig) -> None:
    _check_options("gmp", s.options, set(GMP_DEFAULTS))
    o = {**GMP_DEFAULTS, **s.options}
    for key in ("start", "end"):
        if isinstance(o[key], bool) or not isinstance(o[key], (int, float)) or not 0.0 <= o[key] <= 1.0:
            raise ValueError(f"sparsity.options.{key} = {o[key]!r} is invalid; allowed: a fraction of training in [0, 1]")
    if o["start"] >= o["end"]:
        raise ValueError(f"sparsity.options.start = {o['start']!r} must be below end = {o['end']!r}")
    _check_choice("sparsity.options.scope", o["scope"], SCOPES)
    if s.update_interval is None:
        raise ValueError("gmp needs sparsity.update_interval (steps between pruning steps); allowed: an integer >= 1")
    if not 0.0 < float(o["initial_density"]) <= 1.0 or s.density > float(o["initial_density"]):
        raise ValueError(f"sparsity.options.initial_density = {o['initial_density']!r} is invalid; allowed: "
                         f"sparsity.density ({s.density}) <= initial_density <= 1")


# ----------------------------------------------------------------------------- lottery-ticket levels

class LotteryLevel:
    """Static-mask training of one lottery-ticket level; keeps the rewind weights (step k) in its state.

    ``start_at_step`` is the global step the trainer starts the level at (k for levels >= 1 in modes
    weights and lr, else 0).
    """

    def __init__(self, sparsity: Any, model: nn.Module, rewind_step: int,
                 rewind_state: dict[str, torch.Tensor] | None, start_at_step: int = 0) -> None:
        self.sparsity, self.model, self.rewind_step = sparsity, model, rewind_step
        self.rewind, self.start_at_step = rewind_state, start_at_step

    @property
    def masks(self) -> Masks:
        """The level's (fixed) masks."""
        return self.sparsity.masks

    def step(self) -> None:
        """Re-apply the masks; snapshot the weights once step k is reached (level 0)."""
        self.sparsity.step()
        if self.rewind is None and self.sparsity.step_count >= self.rewind_step:
            from sparsetime.pruning import snapshot

            self.rewind = {k: v.cpu() for k, v in snapshot(self.model).items()}

    def density(self) -> float:
        """Realised density of the level's masks."""
        return self.sparsity.density()

    def exploration_rate(self) -> float:
        """Rs of a static mask: its density."""
        return self.sparsity.exploration_rate()

    def state_dict(self) -> dict[str, Any]:
        """Masks and counters (``dynamic``) plus the rewind weights (``rewind``, None before step k)."""
        return {"dynamic": self.sparsity.state_dict(), "rewind": self.rewind}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore masks, counters and rewind weights."""
        if not isinstance(state, Mapping) or "dynamic" not in state or "rewind" not in state:
            raise ValueError("not a lottery-ticket level state (expected keys 'dynamic' and 'rewind')")
        self.sparsity.load_state_dict(state["dynamic"])
        self.rewind = state["rewind"]


def _build_lth(ctx: SparsifierContext) -> Sparsifier:
    from sparsetime.pruning import prune_level, snapshot

    s = ctx.sparsity
    o = {**LTH_DEFAULTS, **s.options}
    k, level = o["rewind_step"], o["level"]
    if k >= ctx.total_steps:
        raise ValueError(f"sparsity.options.rewind_step = {k} is beyond training; allowed: 0 <= rewind_step < "
                         f"{ctx.total_steps} (the run's total steps)")
    if ctx.resuming:
        return LotteryLevel(_static(ctx, full_masks(ctx.model, s)), ctx.model, k, None)
    if level == 0:
        masks = full_masks(ctx.model, s)
        rewind = {n: v.cpu() for n, v in snapshot(ctx.model).items()} if k == 0 else None
        return LotteryLevel(_static(ctx, masks), ctx.model, k, rewind)
    previous = Path(str(o["previous"]))
    if not (previous / "summary.json").is_file():
        raise ValueError(f"lottery level {level} needs the finished run of level {level - 1} at "
                         f"sparsity.options.previous = {str(previous)!r}; it has no summary.json")
    state = load_checkpoint(previous / "checkpoint.pt")
    prev = state["sparsifier"]
    if not isinstance(prev, Mapping) or prev.get("rewind") is None:
        raise ValueError(f"{str(previous)!r} is not a finished lottery-ticket level (no rewind weights)")
    device = next(iter(ctx.model.parameters())).device
    ctx.model.load_state_dict(state["model"])  # the previous level's trained weights
    prev_masks = {n: m.to(device) for n, m in prev["dynamic"]["masks"].items()}
    generator = torch.Generator().manual_seed(ctx.seed * 1_000_003 + level)
    masks = prune_level(ctx.model, prev_masks, o["fraction"], o["scope"], generator=generator)
    if o["mode"] == "weights":
        ctx.model.load_state_dict(prev["rewind"])  # back to step k, BN statistics included
    start = k if o["mode"] in ("weights", "lr") else 0
    log.info("lottery level %d: pruned %g of the active weights of %s, mode %s, training from step %d", level,
             o["fraction"], previous, o["mode"], start)
    return LotteryLevel(_static(ctx, masks), ctx.model, k, dict(prev["rewind"]), start)


def _check_lth(s: SparsityConfig) -> None:
    _check_options("lth", s.options, set(LTH_DEFAULTS))
    o = {**LTH_DEFAULTS, **s.options}
    _check_open_fraction("sparsity.options.fraction", o["fraction"])
    _check_int("sparsity.options.rewind_step", o["rewind_step"], 0)
    _check_int("sparsity.options.level", o["level"], 0)
    _check_int("sparsity.options.levels", o["levels"], 0)
    _check_choice("sparsity.options.mode", o["mode"], LTH_MODES)
    _check_choice("sparsity.options.scope", o["scope"], SCOPES)
    if o["level"] > 0 and not o["previous"]:
        raise ValueError(f"sparsity.options.level = {o['level']} needs sparsity.options.previous (the previous "
                         "level's run directory); run all levels with `sparsetime lth`")


def lth_level_density(level: int, fraction: float) -> float:
    """Nominal density of level ``level``: (1 - p)^level."""
    return (1.0 - fraction) ** level


def lth_levels_for(density: float, fraction: float) -> int:
    """Fewest levels whose density (1 - p)^L is at or below ``density``."""
    return max(0, math.ceil(math.log(density) / math.log(1.0 - fraction) - 1e-12))


# ----------------------------------------------------------------------------- registration

_STATIC = {"update_interval": None}
for _name in PRUNE_AT_INIT:
    register_method(_name, _build_prune_at_init(_name), fixed=_STATIC, check=_check_prune_at_init(_name),
                    sparse_execution=True, description=f"{_name} pruning at initialisation, then static sparse training")
register_method("gmp", _build_gmp, check=_check_gmp,
                description="gradual magnitude pruning (Zhu & Gupta) from dense to sparsity.density")
register_method("lth", _build_lth, fixed=_STATIC, check=_check_lth,
                description="one lottery-ticket level (run every level with `sparsetime lth`)")
