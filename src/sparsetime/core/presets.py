"""Each method's defaults, in one table, and the presets that apply them.

:data:`METHOD_DEFAULTS` is the single home of the SET / RigL / SNFS (and static-mask) defaults:
the preset functions ``SET``, ``RigL`` and ``SNFS`` read it, and so does the runner's method
registry (``sparsity.method=set|rigl|snfs|static``), which takes every entry that is a config
field except ``update_interval``: a run's ΔT defaults to :data:`RUN_UPDATE_INTERVAL`, and a static
mask has none. Every keyword can still be overridden.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:  # imported where used, so the engine's modules may read the constants below
    from .sparsifier import DynamicSparsity

#: Steps between topology updates of a ``DynamicSparsity`` built without ``update_interval``:
#: RigL's ΔT of 100 steps.
DEFAULT_UPDATE_INTERVAL = 100
#: ``sparsity.update_interval`` of a run config that gives none, for every method that updates
#: (SET, RigL, SNFS) or prunes (GMP). The runner's default run (5 epochs of Fashion-MNIST at batch
#: 128, about 2300 steps) would see a single SET update at the paper's 1500 steps; 200 gives ten.
RUN_UPDATE_INTERVAL = 200

_SET = {  # ITOP paper's public code and README (CIFAR, batch 128)
    "distribution": "erk", "growth": "random", "drop": "magnitude", "drop_fraction": 0.5, "drop_schedule": "cosine",
    "min_drop_fraction": 0.005, "update_interval": 1500, "stop_fraction": 1.0, "redistribution": False,
}
_RIGL = {  # RigL paper, section 4 / appendix
    "distribution": "erk", "growth": "gradient", "drop": "magnitude", "drop_fraction": 0.3, "drop_schedule": "cosine",
    "min_drop_fraction": 0.0, "update_interval": DEFAULT_UPDATE_INTERVAL, "stop_fraction": 0.75,
    "redistribution": False,
}
_SNFS = {  # sparse momentum paper; it updates once per epoch, so there is no fixed update_interval
    "distribution": "uniform", "growth": "momentum", "drop": "magnitude", "drop_fraction": 0.5,
    "drop_schedule": "cosine", "min_drop_fraction": 0.0, "stop_fraction": 1.0, "redistribution": True,
    "momentum_beta": 0.9,
}
_STATIC = {  # a fixed random mask: the schedule entries are never used, they are the engine's own defaults
    "distribution": "erk", "growth": "random", "drop_fraction": 0.5, "drop_schedule": "cosine",
    "min_drop_fraction": 0.0, "stop_fraction": 1.0, "redistribution": False,
}
#: {method: {DynamicSparsity keyword: default}}; read-only.
METHOD_DEFAULTS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    name: MappingProxyType(table) for name, table in
    (("set", _SET), ("rigl", _RIGL), ("snfs", _SNFS), ("static", _STATIC))})


def _build(method: str, model: nn.Module, optimizer: torch.optim.Optimizer, density: float, total_steps: int,
           overrides: dict[str, Any]) -> DynamicSparsity:
    from .sparsifier import DynamicSparsity

    kw: dict[str, Any] = {**METHOD_DEFAULTS[method], **overrides}
    return DynamicSparsity(model, optimizer, density, total_steps=total_steps, **kw)


def SET(model: nn.Module, optimizer: torch.optim.Optimizer, density: float, total_steps: int,
        **overrides: Any) -> DynamicSparsity:
    """SET-ITOP (Mocanu et al. 2018; Liu et al. 2021, "Do we actually need dense over-parameterization?").

    Defaults, from the ITOP paper's public code and README: ERK distribution, random growth,
    magnitude drop, drop fraction 0.5 with cosine decay to f_min = 0.005, update every 1500 steps
    (CIFAR, batch 128), updates until the end of training (stop_fraction 1.0), no redistribution.
    """
    return _build("set", model, optimizer, density, total_steps, overrides)


def RigL(model: nn.Module, optimizer: torch.optim.Optimizer, density: float, total_steps: int,
         **overrides: Any) -> DynamicSparsity:
    """RigL (Evci et al. 2020, "Rigging the lottery").

    Defaults, from the paper (section 4 / appendix): ERK distribution, gradient growth with the
    dense gradient of the update step, magnitude drop, drop fraction 0.3 with cosine decay to 0,
    update every 100 steps, updates stop at 75% of training. New weights start at zero.
    """
    return _build("rigl", model, optimizer, density, total_steps, overrides)


def SNFS(model: nn.Module, optimizer: torch.optim.Optimizer, density: float, total_steps: int,
         update_interval: int, **overrides: Any) -> DynamicSparsity:
    """Sparse momentum / SNFS (Dettmers & Zettlemoyer 2019, "Sparse networks from scratch").

    Defaults, from the paper: uniform initial density, momentum growth (EMA 0.9 of dense
    gradients), magnitude drop, prune rate 0.5 with cosine decay, momentum-based redistribution
    across layers. The paper updates once per epoch: pass ``update_interval=steps_per_epoch``.
    """
    return _build("snfs", model, optimizer, density, total_steps, {"update_interval": update_interval, **overrides})
