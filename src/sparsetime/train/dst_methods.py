"""Dense training and dynamic sparse training as runner methods: dense, static, set, rigl, snfs.

The defaults of static/set/rigl/snfs come from :data:`sparsetime.core.defaults.METHOD_DEFAULTS`
(the presets' table): its entries that are ``sparsity`` fields fill the config's ``None`` fields,
except ``update_interval`` (a run's ΔT defaults to ``sparsity.update_interval``'s own default, a
static mask has none); the others (``drop``, ``momentum_beta``) are passed to ``DynamicSparsity``
unless ``sparsity.options`` sets them.

Training FLOPs per example and step: dense 3 f_D; static and SET 3 f_S; RigL
(3 f_S ΔT + 2 f_S + f_D) / (ΔT + 1) while it updates (an update step needs the dense gradient),
3 f_S from the step T * stop_fraction on; SNFS 2 f_S + f_D (the dense gradient feeds its momentum
every step).
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Mapping
from typing import Any

import torch

from sparsetime.core.defaults import METHOD_DEFAULTS
from sparsetime.core.sparsifier import DynamicSparsity
from sparsetime.core.timing import UpdateSchedule

from .config import SparsityConfig
from .context import SparsifierContext
from .init_masks import initial_masks
from .method_checks import check_options
from .methods import register_method

_FIELDS = {f.name for f in dataclasses.fields(SparsityConfig)}


class DenseTraining:
    """The no-op sparsifier of dense training: every weight active, Rs = 1."""

    def step(self) -> None:
        """Nothing to do."""

    def density(self) -> float:
        """Dense: 1."""
        return 1.0

    def current_densities(self) -> dict[str, float]:
        """No sparse layer: every layer counts as dense."""
        return {}

    def layer_report(self) -> list[dict[str, Any]]:
        """No sparse layer."""
        return []

    def exploration_rate(self) -> float:
        """Every weight is active, so every weight has been explored."""
        return 1.0

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """No sparse layer, no mask."""
        return {}

    @property
    def update_history(self) -> None:
        """No topology updates."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """No state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """No state."""


def preset_defaults(method: str) -> dict[str, Any]:
    """The ``sparsity`` fields the presets' table gives ``method`` (``update_interval`` left out)."""
    return {k: v for k, v in METHOD_DEFAULTS[method].items() if k in _FIELDS and k != "update_interval"}


def preset_engine_options(method: str) -> dict[str, Any]:
    """The presets' ``DynamicSparsity`` keywords for ``method`` that are no ``sparsity`` field (none for a
    method the presets do not know, e.g. a plugged-in variant built with this module's factory)."""
    return {k: v for k, v in METHOD_DEFAULTS.get(method, {}).items() if k not in _FIELDS}


def _build_dynamic(ctx: SparsifierContext) -> DynamicSparsity:
    s = ctx.sparsity
    options: dict[str, Any] = {**preset_engine_options(s.method), **s.options}
    initial = None
    if s.init_mask is not None:  # e.g. SNIP-SET-ITOP, LTH-SET-ITOP: start from a pruning mask
        initial = initial_masks(ctx, options.pop("init_options", None))
    return DynamicSparsity(
        ctx.model, ctx.optimizer, s.density, distribution=s.distribution, growth=s.growth,
        drop_fraction=s.drop_fraction, drop_schedule=s.drop_schedule, min_drop_fraction=s.min_drop_fraction,
        update_interval=s.update_interval,
        total_steps=ctx.total_steps, stop_fraction=s.stop_fraction, dense_layers=s.dense_layers or None,
        dense_first=s.dense_first, dense_last=s.dense_last, sparse_init=s.sparse_init,
        redistribution=s.redistribution, seed=ctx.seed, initial_masks=initial, execution=s.execution,
        sparse_layers=ctx.sparse_layers, **options,
    )


def rigl_step_flops(f_sparse: float, f_dense: float, update_interval: int | None) -> float:
    """RigL's average per step while it updates: every ΔT-th step also needs the dense gradient."""
    dt = update_interval or 0
    return (3.0 * f_sparse * dt + 2.0 * f_sparse + f_dense) / (dt + 1)


def rigl_updating_steps(s: SparsityConfig, total_steps: int) -> int:
    """Leading steps at RigL's rate: steps t = 1, 2, ... may update while t <= T * stop_fraction
    (none without an update interval); every later step costs 3 f_S."""
    if s.update_interval is None:
        return 0
    end = UpdateSchedule(s.update_interval, total_steps, stop_fraction=s.stop_fraction).end_step
    return min(total_steps, math.floor(end))


def _snfs_step_flops(f_sparse: float, f_dense: float, update_interval: int | None) -> float:
    return 2.0 * f_sparse + f_dense


#: ``DynamicSparsity`` keywords the factory fills from config fields and the run (not options)
_FROM_CONFIG = {"model", "optimizer", "density", "distribution", "growth", "drop_fraction", "drop_schedule",
                "min_drop_fraction", "update_interval", "total_steps", "stop_fraction", "dense_layers",
                "dense_first", "dense_last", "sparse_init", "redistribution", "seed", "initial_masks", "execution",
                "sparse_layers"}


#: what ``sparsity.options`` may hold for a dynamic-sparsity method: the engine's other keywords
ENGINE_OPTIONS = tuple(sorted((set(inspect.signature(DynamicSparsity.__init__).parameters) - {"self"} - _FROM_CONFIG)
                              | {"init_options"}))


def engine_option_names() -> list[str]:
    """What ``sparsity.options`` may hold for a dynamic-sparsity method (:data:`ENGINE_OPTIONS`)."""
    return list(ENGINE_OPTIONS)


def _check_engine_options(s: SparsityConfig) -> None:
    check_options(s.method, s.options, set(engine_option_names()))
    if "init_options" in s.options and s.init_mask is None:
        raise ValueError("sparsity.options.init_options only applies with sparsity.init_mask (a pruning method); "
                         "allowed: set sparsity.init_mask, or drop init_options")


def _dst(method: str, fixed: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
    register_method(method, _build_dynamic, init_mask=True, sparse_execution=True, defaults=preset_defaults(method),
                    fixed=fixed, check=_check_engine_options, **kwargs)


register_method("dense", lambda ctx: DenseTraining(), fixed={"density": 1.0, "update_interval": None},
                step_flops=lambda f_s, f_d, dt: 3.0 * f_d, description="dense training (no masks)")
_dst("static", fixed={"update_interval": None}, description="fixed random sparse mask")
_dst("set", description="SET / SET-ITOP: magnitude drop, random growth")
_dst("rigl", step_flops=rigl_step_flops, updating_steps=rigl_updating_steps,
     description="RigL: magnitude drop, dense-gradient growth")
_dst("snfs", step_flops=_snfs_step_flops, description="SNFS: magnitude drop, momentum growth, momentum redistribution")
