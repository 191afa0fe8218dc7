"""Presets that fill in each paper's defaults; every keyword can still be overridden."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .sparsifier import DynamicSparsity


def SET(model: nn.Module, optimizer: torch.optim.Optimizer, density: float, total_steps: int,
        **overrides: Any) -> DynamicSparsity:
    """SET-ITOP (Mocanu et al. 2018; Liu et al. 2021, "Do we actually need dense over-parameterization?").

    Defaults, from the ITOP paper's public code and README: ERK distribution, random growth,
    magnitude drop, drop fraction 0.5 with cosine decay to f_min = 0.005, update every 1500 steps
    (CIFAR, batch 128), updates until the end of training (stop_fraction 1.0), no redistribution.
    """
    kw: dict[str, Any] = dict(distribution="erk", growth="random", drop="magnitude", drop_fraction=0.5,
                              drop_schedule="cosine", min_drop_fraction=0.005, update_interval=1500,
                              stop_fraction=1.0, redistribution=False)
    kw.update(overrides)
    return DynamicSparsity(model, optimizer, density, total_steps=total_steps, **kw)


def RigL(model: nn.Module, optimizer: torch.optim.Optimizer, density: float, total_steps: int,
         **overrides: Any) -> DynamicSparsity:
    """RigL (Evci et al. 2020, "Rigging the lottery").

    Defaults, from the paper (section 4 / appendix): ERK distribution, gradient growth with the
    dense gradient of the update step, magnitude drop, drop fraction 0.3 with cosine decay to 0,
    update every 100 steps, updates stop at 75% of training. New weights start at zero.
    """
    kw: dict[str, Any] = dict(distribution="erk", growth="gradient", drop="magnitude", drop_fraction=0.3,
                              drop_schedule="cosine", min_drop_fraction=0.0, update_interval=100,
                              stop_fraction=0.75, redistribution=False)
    kw.update(overrides)
    return DynamicSparsity(model, optimizer, density, total_steps=total_steps, **kw)


def SNFS(model: nn.Module, optimizer: torch.optim.Optimizer, density: float, total_steps: int,
         update_interval: int, **overrides: Any) -> DynamicSparsity:
    """Sparse momentum / SNFS (Dettmers & Zettlemoyer 2019, "Sparse networks from scratch").

    Defaults, from the paper: uniform initial density, momentum growth (EMA 0.9 of dense
    gradients), magnitude drop, prune rate 0.5 with cosine decay, momentum-based redistribution
    across layers. The paper updates once per epoch: pass ``update_interval=steps_per_epoch``.
    """
    kw: dict[str, Any] = dict(distribution="uniform", growth="momentum", drop="magnitude", drop_fraction=0.5,
                              drop_schedule="cosine", min_drop_fraction=0.0, stop_fraction=1.0,
                              redistribution=True, momentum_beta=0.9)
    kw.update(overrides)
    return DynamicSparsity(model, optimizer, density, total_steps=total_steps, update_interval=update_interval, **kw)
