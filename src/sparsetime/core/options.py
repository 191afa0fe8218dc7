"""The validated settings of a :class:`~sparsetime.core.sparsifier.DynamicSparsity`.

Every argument is checked here, before the model is touched, so a bad value never leaves a model
half converted. Errors name the bad value and what is allowed.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from . import criteria, schedules
from .distributions import DISTRIBUTIONS, check_density
from .timing import UpdateSchedule

EXECUTION_MODES = ("masked", "sparse", "auto")


@dataclass(frozen=True)
class SparsityOptions:
    """Plain, validated settings (no model, no tensors)."""

    density: float | None
    distribution: str | Mapping[str, float]
    growth: criteria.GrowthCriterion
    drop: criteria.DropCriterion
    schedule: UpdateSchedule
    dense_layers: Sequence[str] | None
    dense_first: bool
    dense_last: bool
    extra_layers: Sequence[str] | None
    erk_power: float
    sparse_init: bool | None
    regrow_dropped: bool
    redistribution: bool
    grad_accumulation: int
    momentum_beta: float
    seed: int
    execution: str
    grad_masking: bool | None
    check_consistency: bool | None = None
    #: weight names that run sparse instead of what ``execution`` decides (a plan recorded earlier)
    sparse_layers: frozenset[str] | None = None

    @property
    def needs_grad(self) -> bool:
        """Growth reads the dense gradient of the update step (RigL)."""
        return self.growth.needs == "grad"

    @property
    def needs_momentum(self) -> bool:
        """A dense EMA of gradients is kept (momentum growth or redistribution)."""
        return self.growth.needs == "momentum" or self.redistribution


def _fraction(label: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{label} must be in [0, 1], got {value!r}")
    return float(value)


def _positive_int(label: str, value: object, none_means: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{label} must be a positive int or None ({none_means}), got {value!r}")
    return value


def _layer_names(names: object, execution: str) -> frozenset[str] | None:
    """``sparse_layers`` as a set of weight names (None: not pinned); ValueError when it is not one."""
    if names is None:
        return None
    if isinstance(names, (str, bytes)) or not isinstance(names, Collection) or not all(
            isinstance(n, str) for n in names):
        raise ValueError(f"sparse_layers must be a collection of weight names such as ['fc1.weight'] or None, "
                         f"got {names!r}")
    if execution == "masked" and names:
        raise ValueError(f"sparse_layers ({', '.join(sorted(names))}) needs execution='auto' or 'sparse'; "
                         "execution='masked' runs every layer masked")
    return frozenset(names)


def build_options(*, density, distribution, growth, drop, drop_fraction, drop_schedule, min_drop_fraction,
                  update_interval, total_steps, start_step, stop_fraction, dense_layers, dense_first,
                  dense_last, extra_layers, erk_power, sparse_init, regrow_dropped, redistribution,
                  grad_accumulation, momentum_beta, seed, execution, grad_masking,
                  check_consistency=None, sparse_layers=None) -> SparsityOptions:
    """Check every argument of ``DynamicSparsity`` and bundle them; ValueError on the first bad one."""
    if density is not None:
        density = check_density(density)
    if not isinstance(distribution, Mapping) and (
            not isinstance(distribution, str) or distribution.lower() not in DISTRIBUTIONS):
        raise ValueError(f"unknown distribution {distribution!r}; allowed: {', '.join(DISTRIBUTIONS)} "
                         "or a mapping {name pattern: density}")
    growth_record = criteria.get_growth(growth)
    drop_record = criteria.get_drop(drop)
    schedules.get_schedule(drop_schedule)
    if execution not in EXECUTION_MODES:
        raise ValueError(f"unknown execution {execution!r}; allowed: {', '.join(EXECUTION_MODES)}")
    sparse_layers = _layer_names(sparse_layers, execution)
    drop_fraction = _fraction("drop_fraction", drop_fraction)
    min_drop_fraction = _fraction("min_drop_fraction", min_drop_fraction)
    if min_drop_fraction > drop_fraction:
        raise ValueError(f"min_drop_fraction ({min_drop_fraction}) must not exceed drop_fraction ({drop_fraction})")
    update_interval = _positive_int("update_interval", update_interval, "static sparsity")
    total_steps = _positive_int("total_steps", total_steps, "unknown length")
    if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 0:
        raise ValueError(f"start_step must be an int >= 0, got {start_step!r}")
    if isinstance(stop_fraction, bool) or not isinstance(stop_fraction, (int, float)) or not 0.0 < stop_fraction <= 1.0:
        raise ValueError(f"stop_fraction must be in (0, 1], got {stop_fraction!r}")
    if update_interval is not None and total_steps is None and (drop_schedule != "constant" or stop_fraction < 1.0):
        raise ValueError(f"total_steps is required with drop_schedule={drop_schedule!r} / stop_fraction="
                         f"{stop_fraction}; pass total_steps=<number of optimizer steps>")
    if isinstance(grad_accumulation, bool) or not isinstance(grad_accumulation, int) or grad_accumulation < 1:
        raise ValueError(f"grad_accumulation must be an int >= 1, got {grad_accumulation!r}")
    if update_interval is not None and grad_accumulation > update_interval:
        raise ValueError(f"grad_accumulation ({grad_accumulation}) must not exceed update_interval "
                         f"({update_interval}): it averages the gradients of the last g steps before an update")
    if isinstance(momentum_beta, bool) or not isinstance(momentum_beta, (int, float)) or not 0.0 <= momentum_beta < 1.0:
        raise ValueError(f"momentum_beta must be in [0, 1), got {momentum_beta!r}")
    schedule = UpdateSchedule(update_interval, total_steps, int(start_step), float(stop_fraction), drop_fraction,
                              min_drop_fraction, drop_schedule)
    return SparsityOptions(
        density=density, distribution=distribution, growth=growth_record, drop=drop_record, schedule=schedule,
        dense_layers=dense_layers, dense_first=bool(dense_first), dense_last=bool(dense_last),
        extra_layers=extra_layers, erk_power=float(erk_power), sparse_init=sparse_init,
        regrow_dropped=bool(regrow_dropped), redistribution=bool(redistribution),
        grad_accumulation=grad_accumulation, momentum_beta=float(momentum_beta), seed=int(seed),
        execution=execution, grad_masking=grad_masking, check_consistency=check_consistency,
        sparse_layers=sparse_layers)
