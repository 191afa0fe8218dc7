"""Registry of sparsity methods: ``sparsity.method`` name -> factory building the sparsifier.

The trainer only knows this registry, so new methods (gradual magnitude pruning, SNIP, lottery
tickets, ...) plug in with :func:`register_method` without editing the trainer. A factory receives
a :class:`SparsifierContext` and returns a :class:`~sparsetime.core.protocol.Sparsifier`. What the
trainer needs to know before building it comes from the method record, decided from the resolved
config: the global step the run starts at (``start_step``) and how training FLOPs are charged
(``step_flops``, ``updating_steps``).

The built-in methods register themselves in :mod:`.dst_methods`, :mod:`.pruning_methods`, :mod:`.supermask_method`,
:mod:`.lottery_level` and :mod:`.transfer_method`, which import this module (never the other way round).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sparsetime.core.protocol import Sparsifier

from .config import EXECUTION_MODES, SparsityConfig
from .context import SparsifierContext
from .init_masks import check_init_mask

__all__ = ["Sparsifier", "SparsifierContext", "SparsityMethod", "available_methods", "get_method",
           "register_method", "resolve_sparsity", "static_step_flops"]


StepFlops = Callable[[float, float, "int | None"], float]
Check = Callable[[SparsityConfig], None]
StartStep = Callable[[SparsityConfig], int]
UpdatingSteps = Callable[[SparsityConfig, int], int]
SummaryExtra = Callable[[Sparsifier], Mapping[str, Any]]


def static_step_flops(f_sparse: float, f_dense: float, update_interval: int | None) -> float:
    """Training FLOPs per example of a step with a fixed mask: forward, and backward for inputs and
    weights, each at the sparse cost: 3 f_S."""
    return 3.0 * f_sparse


@dataclass(frozen=True)
class SparsityMethod:
    """A registered method. ``defaults`` fill the ``None`` fields of SparsityConfig; ``fixed``
    always overwrite (e.g. a static mask has no update interval). ``step_flops(f_S, f_D, ΔT)``
    gives the training FLOPs per example and step; with ``updating_steps(sparsity, T)`` it applies
    only to that many leading steps (while the topology is updated) and every later step costs
    3 f_S. ``start_step(sparsity)`` is the global step the run starts at (0 unless given).
    ``summary_extra(sparsifier)`` gives the method's own figures for the run summary (e.g. the
    accuracy of a ticket's mask on its random init)."""

    name: str
    build: Callable[[SparsifierContext], Sparsifier]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    step_flops: StepFlops = static_step_flops
    description: str = ""
    check: Check | None = None  # raises ValueError for bad method options, before anything is written
    init_mask: bool = False  # whether ``sparsity.init_mask`` may seed the method's masks
    sparse_execution: bool = False  # whether ``sparsity.execution`` may be "sparse"/"auto"
    start_step: StartStep | None = None
    updating_steps: UpdatingSteps | None = None
    summary_extra: SummaryExtra | None = None

    def first_step(self, sparsity: SparsityConfig) -> int:
        """The global step a run of the resolved ``sparsity`` starts at."""
        return 0 if self.start_step is None else self.start_step(sparsity)

    def flops_phase_end(self, sparsity: SparsityConfig, total_steps: int) -> int:
        """Steps before this global step are charged at ``step_flops``, later ones at 3 f_S."""
        return total_steps if self.updating_steps is None else self.updating_steps(sparsity, total_steps)


_METHODS: dict[str, SparsityMethod] = {}


def register_method(name: str, build: Callable[[SparsifierContext], Sparsifier], *,
                    defaults: Mapping[str, Any] | None = None, fixed: Mapping[str, Any] | None = None,
                    step_flops: StepFlops | None = None, description: str = "", check: Check | None = None,
                    init_mask: bool = False, sparse_execution: bool = False, start_step: StartStep | None = None,
                    updating_steps: UpdatingSteps | None = None, summary_extra: SummaryExtra | None = None,
                    replace: bool = False) -> SparsityMethod:
    """Register ``build`` under ``name`` (a ``sparsity.method`` value).

    ``check(resolved_sparsity)`` validates method options at resolve time; ``init_mask`` says
    whether ``sparsity.init_mask`` is accepted (the factory must then honour it);
    ``sparse_execution`` whether ``sparsity.execution`` may be "sparse"/"auto" (the factory must
    then pass it to :class:`~sparsetime.DynamicSparsity`); ``start_step``, ``updating_steps`` and
    ``summary_extra`` see :class:`SparsityMethod`.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"method name must be a non-empty string, got {name!r}")
    if name in _METHODS and not replace:
        raise ValueError(f"sparsity method {name!r} is already registered; pass replace=True to override")
    known = {f.name for f in dataclasses.fields(SparsityConfig)}
    for key in {**(defaults or {}), **(fixed or {})}:
        if key not in known:
            raise ValueError(f"method {name!r}: {key!r} is not a sparsity field; allowed: {', '.join(sorted(known))}")
    method = SparsityMethod(name, build, dict(defaults or {}), dict(fixed or {}), step_flops or static_step_flops,
                            description, check, bool(init_mask), bool(sparse_execution), start_step, updating_steps,
                            summary_extra)
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
        check_init_mask(resolved.init_mask)
    if resolved.execution not in EXECUTION_MODES:
        raise ValueError(f"sparsity.execution={resolved.execution!r} is not known; "
                         f"allowed: {', '.join(EXECUTION_MODES)}")
    if resolved.execution == "auto" and not method.sparse_execution:
        # the runner's default on a method that needs dense weights: auto would run it all masked
        resolved = dataclasses.replace(resolved, execution="masked")
    if resolved.execution != "masked" and not method.sparse_execution:
        takers = sorted(n for n, m in _METHODS.items() if m.sparse_execution)
        raise ValueError(f"sparsity.execution={resolved.execution!r} is not supported by method {cfg.method!r} "
                         f"(it needs dense weights); allowed: 'masked', or one of the methods {', '.join(takers)}")
    uses_distribution = "distribution" in {**method.defaults, **method.fixed}
    if resolved.flops_fraction is not None and (not uses_distribution or resolved.init_mask is not None):
        takers = sorted(n for n, m in _METHODS.items() if "distribution" in {**m.defaults, **m.fixed})
        raise ValueError(f"sparsity.flops_fraction={resolved.flops_fraction!r} needs a density distribution to "
                         f"solve for (method {cfg.method!r}{' with init_mask' if resolved.init_mask else ''} has "
                         f"none); allowed: the methods {', '.join(takers)} without init_mask")
    if method.check is not None:
        method.check(resolved)
    return resolved
