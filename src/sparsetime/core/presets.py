"""The presets of each paper's method: ``DynamicSparsity`` with the defaults of
:data:`sparsetime.core.defaults.METHOD_DEFAULTS`; every keyword can still be overridden."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .defaults import DEFAULT_UPDATE_INTERVAL, METHOD_DEFAULTS, RUN_UPDATE_INTERVAL
from .sparsifier import DynamicSparsity

__all__ = ["SET", "RigL", "SNFS", "METHOD_DEFAULTS", "DEFAULT_UPDATE_INTERVAL", "RUN_UPDATE_INTERVAL"]


def _build(method: str, model: nn.Module, optimizer: torch.optim.Optimizer, density: float, total_steps: int,
           overrides: dict[str, Any]) -> DynamicSparsity:
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
