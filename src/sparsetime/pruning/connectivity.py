"""Linear mode connectivity and instability (Frankle et al. 2020).

Given two networks trained from the same weights under different data orders, evaluate
err(α w_a + (1 - α) w_b) along a grid of α; instability is the largest error on the path minus
the mean of the endpoint errors. BatchNorm running statistics do not interpolate meaningfully,
so they are recomputed for every point (endpoints included) from ``bn_loader``.
"""
from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ._common import check_int, model_device, to_device

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InstabilityResult:
    """Errors along the path (α = 1 is model_a, α = 0 model_b) and the instability."""

    alphas: list[float]
    errors: list[float]
    instability: float


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` contains a BatchNorm layer that tracks running statistics."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats for m in model.modules())


@torch.no_grad()
def recompute_bn_statistics(model: nn.Module, loader: Iterable, num_batches: int | None = None) -> None:
    """Reset every BatchNorm's running statistics and re-estimate them as exact averages over ``loader``.

    Batches may be tensors or (inputs, targets) pairs; only inputs are used. The model's train/eval
    mode and BN momenta are restored afterwards.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return
    was_training = model.training
    momenta = [bn.momentum for bn in bns]
    device = model_device(model)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative moving average: exact mean over the batches seen
        model.train()
        seen = 0
        batches = loader if num_batches is None else itertools.islice(loader, check_int(num_batches, "num_batches", 1))
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(to_device(x, device, dtype))
            seen += 1
        if seen == 0:
            raise ValueError("bn_loader yielded no batch; BN statistics cannot be recomputed")
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        model.train(was_training)


def _interpolate(model_a: nn.Module, model_b: nn.Module, alpha: float) -> nn.Module:
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    mixed = {}
    for k, va in state_a.items():
        vb = state_b[k].to(va.device)
        mixed[k] = alpha * va + (1.0 - alpha) * vb if va.is_floating_point() else va.clone()
    out = copy.deepcopy(model_a)
    out.load_state_dict(mixed)
    return out


def interpolate_instability(model_a: nn.Module, model_b: nn.Module, evaluate_fn: Callable[[nn.Module], float],
                            alphas: Sequence[float] | None = None, bn_loader: Iterable | None = None,
                            bn_batches: int | None = None) -> InstabilityResult:
    """Instability = max_α err(α w_a + (1-α) w_b) - (err(w_a) + err(w_b)) / 2 over ``alphas``.

    ``alphas`` defaults to 0, 0.1, ..., 1; 0 and 1 are always added. ``evaluate_fn(model)`` returns
    the error of a model (e.g. test error in [0, 1]). For models with BatchNorm, ``bn_loader`` is
    required and must be re-iterable (a DataLoader or a list): running statistics are recomputed
    for every point (at most ``bn_batches`` batches).
    Neither input model is modified.
    """
    keys_a, keys_b = model_a.state_dict(), model_b.state_dict()
    if list(keys_a) != list(keys_b) or any(keys_a[k].shape != keys_b[k].shape for k in keys_a):
        raise ValueError("model_a and model_b must have the same architecture (state_dict keys and shapes)")
    if not callable(evaluate_fn):
        raise ValueError(f"evaluate_fn must be callable(model) -> error, got {evaluate_fn!r}")
    grid = [i / 10 for i in range(11)] if alphas is None else list(alphas)
    for a in grid:
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0.0 <= float(a) <= 1.0:
            raise ValueError(f"alphas must be numbers in [0, 1], got {a!r}")
    grid = sorted({float(a) for a in grid} | {0.0, 1.0})
    needs_bn = has_batchnorm(model_a)
    if needs_bn and bn_loader is None:
        raise ValueError("the models have BatchNorm layers: pass bn_loader so running statistics are "
                         "recomputed at every interpolation point")
    errors = []
    for alpha in grid:
        point = _interpolate(model_a, model_b, alpha)
        if needs_bn:
            recompute_bn_statistics(point, bn_loader, bn_batches)
        point.eval()
        errors.append(float(evaluate_fn(point)))
    endpoints = (errors[-1] + errors[0]) / 2.0
    instability = max(errors) - endpoints
    logger.info("linear mode connectivity: instability %.4f (max error %.4f)", instability, max(errors))
    return InstabilityResult(alphas=grid, errors=errors, instability=instability)
