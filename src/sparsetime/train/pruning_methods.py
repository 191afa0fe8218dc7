"""Dense-to-sparse baselines as runner methods: pruning at initialisation and gradual magnitude pruning.

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

Lottery-ticket levels (``lth``) live in :mod:`.lottery_level`; ``sparsity.init_mask`` seeding in
:mod:`.init_masks`.
"""
from __future__ import annotations

import logging
from typing import Any

from sparsetime.core.report import masks_report
from sparsetime.core.sparsifier import DynamicSparsity
from sparsetime.pruning import GradualMagnitudePruner

from .config import SparsityConfig
from .context import SparsifierContext
from .flops import mask_densities
from .init_masks import (PRUNE_AT_INIT, Masks, full_masks, pruning_masks, score_option_names, selection,
                         static_sparsifier)
from .method_checks import SCOPES, check_choice, check_options
from .methods import register_method

log = logging.getLogger(__name__)

GMP_DEFAULTS = {"start": 0.25, "end": 0.75, "scope": "global", "initial_density": 1.0}


# ----------------------------------------------------------------------------- pruning at initialisation

def _build_prune_at_init(method: str):
    def build(ctx: SparsifierContext) -> DynamicSparsity:
        s = ctx.sparsity
        masks = full_masks(ctx.model, s) if ctx.resuming else pruning_masks(ctx, method, s.options)
        # the weights are the fresh initialisation: rescale them per unit like a random sparse mask's
        return static_sparsifier(ctx, masks, rescale=s.sparse_init)
    return build


def _check_prune_at_init(method: str):
    def check(s: SparsityConfig) -> None:
        check_options(method, s.options, set(score_option_names(method)) | {"scope"})
        check_choice("sparsity.options.scope", s.options.get("scope", "global"), SCOPES)
    return check


# ----------------------------------------------------------------------------- gradual magnitude pruning

class GmpSparsifier:
    """Adapter of :class:`~sparsetime.pruning.GradualMagnitudePruner` to the Sparsifier protocol."""

    def __init__(self, pruner: GradualMagnitudePruner) -> None:
        self.pruner = pruner

    @property
    def masks(self) -> Masks:
        """Current masks (shrinking over training)."""
        return self.pruner.masks

    @property
    def update_history(self) -> None:
        """Pruning only shrinks the masks: no topology updates."""
        return None

    def current_densities(self) -> dict[str, float]:
        """{weight name: realised density} of the current masks."""
        return mask_densities(self.pruner.masks)

    def layer_report(self) -> list[dict[str, Any]]:
        """Per layer: the current mask's counts (GMP tracks no exploration: itop_rate None)."""
        return masks_report(self.pruner.masks)

    def exploration_rate(self) -> None:
        """Not tracked: pruning explores nothing beyond the dense start."""
        return None

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


def _build_gmp(ctx: SparsifierContext) -> GmpSparsifier:
    s = ctx.sparsity
    o = {**GMP_DEFAULTS, **s.options}
    start_step, end_step = gmp_steps(ctx.total_steps, s.update_interval, o["start"], o["end"])
    pruner = GradualMagnitudePruner(ctx.model, ctx.optimizer, s.density, start_step, end_step, s.update_interval,
                                    initial_density=o["initial_density"], scope=o["scope"],
                                    total_steps=ctx.total_steps, seed=ctx.seed, **selection(s))
    log.info("gmp: density %g -> %g between steps %d and %d every %d steps", o["initial_density"], s.density,
             start_step, end_step, s.update_interval)
    return GmpSparsifier(pruner)


def _check_gmp(s: SparsityConfig) -> None:
    check_options("gmp", s.options, set(GMP_DEFAULTS))
    o = {**GMP_DEFAULTS, **s.options}
    for key in ("start", "end"):
        if isinstance(o[key], bool) or not isinstance(o[key], (int, float)) or not 0.0 <= o[key] <= 1.0:
            raise ValueError(f"sparsity.options.{key} = {o[key]!r} is invalid; allowed: a fraction of training in [0, 1]")
    if o["start"] >= o["end"]:
        raise ValueError(f"sparsity.options.start = {o['start']!r} must be below end = {o['end']!r}")
    check_choice("sparsity.options.scope", o["scope"], SCOPES)
    if s.update_interval is None:
        raise ValueError("gmp needs sparsity.update_interval (steps between pruning steps); allowed: an integer >= 1")
    if not 0.0 < float(o["initial_density"]) <= 1.0 or s.density > float(o["initial_density"]):
        raise ValueError(f"sparsity.options.initial_density = {o['initial_density']!r} is invalid; allowed: "
                         f"sparsity.density ({s.density}) <= initial_density <= 1")


# ----------------------------------------------------------------------------- registration

_STATIC = {"update_interval": None}
for _name in PRUNE_AT_INIT:
    register_method(_name, _build_prune_at_init(_name), fixed=_STATIC, check=_check_prune_at_init(_name),
                    sparse_execution=True, description=f"{_name} pruning at initialisation, then static sparse training")
register_method("gmp", _build_gmp, check=_check_gmp,
                description="gradual magnitude pruning (Zhu & Gupta) from dense to sparsity.density")
