"""Each method's defaults, in one table: the single home of the SET / RigL / SNFS (and
static-mask) defaults. The preset functions ``SET``, ``RigL`` and ``SNFS``
(:mod:`sparsetime.core.presets`), ``DynamicSparsity``'s own ``update_interval`` default, and the
runner's method registry (``sparsity.method=set|rigl|snfs|static``) all read it. The runner takes
every entry that is a config field except ``update_interval``: a run's ΔT defaults to
:data:`RUN_UPDATE_INTERVAL`, and a static mask has none.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

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
