"""Registry of sparsity methods: ``sparsity.method`` name -> factory building the sparsifier.

The trainer only knows this registry, so new methods (gradual magnitude pruning, SNIP, lottery
tickets, ...) plug in with :func:`register_method` without editing the trainer. A factory receives
a :class:`SparsifierContext` and returns an object with ``step()``, ``state_dict()``,
``load_state_dict()`` and ``density()``; ``masks`` (name -> bool tensor), ``exploration_rate()``,
``update_history`` and ``layer_report()`` are used when present.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from .config import SparsityConfig


@runtime_checkable
class Sparsifier(Protocol):
    """What the trainer needs from a sparsifier."""

    def step(self) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def density(self) -> float: ...


@dataclass(frozen=True)
class SparsifierContext:
    """Everything a factory may use. ``train_batches()`` gives a fresh, seeded iterator of
    training batches (on ``device``) for methods that score weights on data before training;
    it does not disturb the training data order. ``resuming`` is True when the state will be
    overwritten from a checkpoint right away, so expensive initial scoring can be skipped."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    sparsity: SparsityConfig
    total_steps: int
    steps_per_epoch: int
    seed: int
    device: torch.device
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    train_batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]
    resuming: bool = False


StepFlops = Callable[[float, float, "int | None"], float]
Check = Callable[[SparsityConfig], None]


def _sparse_step_flops(f_sparse: float, f_dense: float, update_interval: int | None) -> float:
    return 3.0 * f_sparse


@dataclass(frozen=True)
class SparsityMethod:
    """A registered method. ``defaults`` fill the ``None`` fields of SparsityConfig; ``fixed``
    always overwrite (e.g. a static mask has no update interval). ``step_flops(f_S, f_D, ΔT)``
    gives the training FLOPs per example and step (SPEC §7)."""

    name: str
    build: Callable[[SparsifierContext], Sparsifier]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    step_flops: StepFlops = _sparse_step_flops
    description: str = ""
    check: Check | None = None  # raises ValueError for bad method options, before anything is written
    init_mask: bool = False  # whether ``sparsity.init_mask`` may seed the method's masks
    sparse_execution: bool = False  # whether ``sparsity.execution`` may be "sparse"/"auto"


_METHODS: dict[str, SparsityMethod] = {}


def register_method(name: str, build: Callable[[SparsifierContext], Sparsifier], *,
                    defaults: Mapping[str, Any] | None = None, fixed: Mapping[str, Any] | None = None,
                    step_flops: StepFlops | None = None, description: str = "", check: Check | None = None,
                    init_mask: bool = False, sparse_execution: bool = False,
                    replace: bool = False) -> SparsityMethod:
    """Register ``build`` under ``name`` (a ``sparsity.method`` value).

    ``check(resolved_sparsity)`` validates method options at resolve time; ``init_mask`` says
    whether ``sparsity.init_mask`` is accepted (the factory must then honour it);
    ``sparse_execution`` whether ``sparsity.execution`` may be "sparse"/"auto" (the factory must
    then pass it to :class:`~sparsetime.DynamicSparsity`).
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"method name must be a non-empty string, got {name!r}")
    if name in _METHODS and not replace:
        raise ValueError(f"sparsity method {name!r} is already registered; pass replace=True to override")
    known = {f.name for f in dataclasses.fields(SparsityConfig)}
    for key in {**(defaults or {}), **(fixed or {})}:
        if key not in known:
            raise ValueError(f"method {name!r}: {key!r} is not a sparsity field; allowed: {', '.join(sorted(known))}")
    method = SparsityMethod(name, build, dict(defaults or {}), dict(fixed or {}),
                            step_flops or _sparse_step_flops, description, check, bool(init_mask),
                            bool(sparse_execution))
    _METHODS[name] = method
    return method


def available_methods() -> list[str]:
    """Names accepted by ``sparsity.method``."""
    return sorted(_METHODS)


def get_method(name: str) -> SparsityMethod:
    """The registered method ``name``; ValueError listing the known ones otherwise."""
    try:
        return _METHODS[name]
    except KeyError:
        raise ValueError(f"unknown sparsity.method {name!r}; available: {', '.join(available_methods())}") from None


def resolve_sparsity(cfg: SparsityConfig) -> SparsityConfig:
    """Copy of ``cfg`` with the method's fixed values and defaults for its ``None`` fields."""
    method = get_method(cfg.method)
    updates = {k: v for k, v in method.defaults.items() if getattr(cfg, k) is None}
    updates.update(method.fixed)
    resolved = dataclasses.replace(cfg, **updates)
    if resolved.init_mask is not None:
        if not method.init_mask:
            takers = sorted(n for n, m in _METHODS.items() if m.init_mask)
            raise ValueError(f"sparsity.init_mask={resolved.init_mask!r} is not used by method {cfg.method!r}; "
                             f"methods that accept it: {', '.join(takers)}")
        from .pruning_methods import check_init_mask

        check_init_mask(resolved.init_mask)
    from .config import EXECUTION_MODES

    if resolved.execution not in EXECUTION_MODES:
        raise ValueError(f"sparsity.execution={resolved.execution!r} is not known; "
                         f"allowed: {', '.join(EXECUTION_MODES)}")
    if resolved.execution != "masked" and not method.sparse_execution:
        takers = sorted(n for n, m in _METHODS.items() if m.sparse_execution)
        raise ValueError(f"sparsity.execution={resolved.execution!r} is not supported by method {cfg.method!r} "
                         f"(it needs dense weights); allowed: 'masked', or one of the methods {', '.join(takers)}")
    if method.check is not None:
        method.check(resolved)
    return resolved


# ----------------------------------------------------------------------------- built-in methods

class DenseTraining:
    """The no-op sparsifier of dense training: every weight active, Rs = 1."""

    def step(self) -> None:
        """Nothing to do."""

    def density(self) -> float:
        """Dense: 1."""
        return 1.0

    def exploration_rate(self) -> float:
        """Every weight is active, so every weight has been explored."""
        return 1.0

    def state_dict(self) -> dict[str, Any]:
        """No state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """No state."""


def _build_dynamic(ctx: SparsifierContext) -> Sparsifier:
    import sparsetime as st  # the core engine; imported late so this module loads on its own

    s = ctx.sparsity
    options = dict(s.options)
    initial = None
    if s.init_mask is not None:  # e.g. SNIP-SET-ITOP, LTH-SET-ITOP: start from a pruning mask
        from .pruning_methods import initial_masks

        initial = initial_masks(ctx, options.pop("init_options", None))
    return st.DynamicSparsity(
        ctx.model, ctx.optimizer, s.density, distribution=s.distribution, growth=s.growth,
        drop_fraction=s.drop_fraction, drop_schedule=s.drop_schedule, min_drop_fraction=s.min_drop_fraction,
        update_interval=s.update_interval,
        total_steps=ctx.total_steps, stop_fraction=s.stop_fraction, dense_layers=s.dense_layers or None,
        dense_first=s.dense_first, dense_last=s.dense_last, sparse_init=s.sparse_init and initial is None,
        redistribution=s.redistribution, seed=ctx.seed, initial_masks=initial, execution=s.execution, **options,
    )


def _rigl_step_flops(f_sparse: float, f_dense: float, update_interval: int | None) -> float:
    dt = update_interval or 0
    return (3.0 * f_sparse * dt + 2.0 * f_sparse + f_dense) / (dt + 1)


def _snfs_step_flops(f_sparse: float, f_dense: float, update_interval: int | None) -> float:
    return 2.0 * f_sparse + f_dense


_DST = {"distribution": "erk", "drop_schedule": "cosine", "redistribution": False, "min_drop_fraction": 0.0}
register_method("dense", lambda ctx: DenseTraining(), fixed={"density": 1.0, "update_interval": None},
                step_flops=lambda f_s, f_d, dt: 3.0 * f_d, description="dense training (no masks)")
register_method("static", _build_dynamic, init_mask=True, sparse_execution=True, fixed={"update_interval": None},
                defaults={**_DST, "growth": "random", "drop_fraction": 0.5, "stop_fraction": 1.0},
                description="fixed random sparse mask")
register_method("set", _build_dynamic, init_mask=True, sparse_execution=True,
                defaults={**_DST, "growth": "random", "drop_fraction": 0.5, "stop_fraction": 1.0,
                          "min_drop_fraction": 0.005},
                description="SET / SET-ITOP: magnitude drop, random growth")
register_method("rigl", _build_dynamic, init_mask=True, sparse_execution=True, step_flops=_rigl_step_flops,
                defaults={**_DST, "growth": "gradient", "drop_fraction": 0.3, "stop_fraction": 0.75},
                description="RigL: magnitude drop, dense-gradient growth")
register_method("snfs", _build_dynamic, init_mask=True, sparse_execution=True, step_flops=_snfs_step_flops,
                defaults={**_DST, "distribution": "uniform", "redistribution": True, "growth": "momentum",
                          "drop_fraction": 0.5, "stop_fraction": 1.0},
                description="SNFS: magnitude drop, momentum growth, momentum redistribution")

from . import pruning_methods  # noqa: E402,F401  registers gmp, lth, snip, grasp, synflow, random, magnitude
