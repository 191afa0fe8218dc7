"""Which layers run sparse: ``execution="masked" | "sparse" | "auto"``, decided before any change.

"masked" keeps every layer a dense tensor times a mask. "sparse" converts every layer the sparse
provider can run (``nn.Linear``/``nn.Conv2d`` on CPU, not tied, not read as ``.weight`` by a
parent such as ``nn.MultiheadAttention``); the others stay masked with a warning. "auto" converts
only the layers where the provider says sparse is faster; on a device without sparse kernels
(CUDA) it keeps them masked and warns about those that would have run sparse on a CPU.
``sparse_layers`` replaces that decision by a recorded one (a checkpoint's), which must be possible
here: resuming never depends on which layers today's rule would pick. Options
that need dense state (a growth score over every position, redistribution, accumulated
gradients) keep "auto" runs masked and are refused by "sparse".
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import nn

from . import criteria
from .options import SparsityOptions
from .store import SparseProvider

CPU = torch.device("cpu")


def dense_state_blocker(opts: SparsityOptions) -> str | None:
    """Why these options cannot run on layers stored sparse (None when they can)."""
    growth = opts.growth
    if not growth.runs_sparse:
        allowed = ", ".join(sorted(n for n, g in criteria.GROWTH.items() if g.runs_sparse))
        return f"growth={growth.name!r} (it scores every dense position; sparse execution supports {allowed})"
    if opts.redistribution:
        return "redistribution=True (it needs a dense momentum of every weight)"
    if growth.needs == "grad" and opts.grad_accumulation > 1:
        return f"gradient growth with grad_accumulation={opts.grad_accumulation} (sparse execution uses 1)"
    return None


def plan_execution(model: nn.Module, params: Mapping[str, nn.Parameter], densities: Mapping[str, float],
                   opts: SparsityOptions, provider: SparseProvider | None,
                   prebuilt: Mapping[str, object]) -> list[str]:
    """Names of the dense layers to convert to sparse modules (validated, warnings issued)."""
    pinned = opts.sparse_layers
    if pinned is not None:
        unknown = sorted(pinned - set(params) - set(prebuilt))
        if unknown:
            raise ValueError(f"sparse_layers names {', '.join(unknown)}, which are not sparse layers of this model "
                             f"(its sparse layers: {', '.join([*params, *prebuilt]) or 'none'})")
    blocker = dense_state_blocker(opts)
    if blocker is not None:
        if pinned and pinned - set(prebuilt):
            raise ValueError(f"sparse_layers pins {', '.join(sorted(pinned - set(prebuilt)))} to sparse execution, "
                             f"which cannot run {blocker}")
        if prebuilt:
            raise ValueError(f"the model holds sparse modules ({', '.join(prebuilt)}), which cannot run {blocker}")
        if opts.execution == "sparse":
            raise ValueError(f"execution='sparse' cannot run {blocker}; use execution='masked'")
        return []
    if opts.execution == "masked" or not params:
        return []
    if provider is None:
        raise ValueError(f"execution={opts.execution!r} needs sparse kernels: import sparsetime.nn first")
    chosen, unsupported, off_device = [], {}, {}
    for n, p in params.items():
        reason = provider.why_not(model, n, p, opts.growth)
        if pinned is not None:
            if n not in pinned:
                continue
            if reason is None and not provider.supports_device(p.device):
                reason = f"no sparse kernels on {p.device}"
            if reason is not None:
                raise ValueError(f"sparse_layers pins {n} to sparse execution, but it cannot run sparse: {reason}")
            chosen.append(n)
        elif reason is not None:
            unsupported[n] = reason
        elif not provider.supports_device(p.device):
            # under "auto", only the layers that would run sparse on a CPU are worth a warning
            if opts.execution == "sparse" or provider.prefers(tuple(p.shape), densities[n], CPU):
                off_device[n] = str(p.device)
        elif opts.execution == "sparse" or provider.prefers(tuple(p.shape), densities[n], p.device):
            chosen.append(n)
    if off_device:
        warnings.warn(f"execution={opts.execution!r}: no sparse kernels on {sorted(set(off_device.values()))} "
                      f"yet; layers {', '.join(off_device)} run masked", UserWarning, stacklevel=4)
    if opts.execution == "sparse" and unsupported:
        warnings.warn("execution='sparse': these layers run masked: " + "; ".join(
            f"{n}: {r}" for n, r in unsupported.items()), UserWarning, stacklevel=4)
    return chosen

