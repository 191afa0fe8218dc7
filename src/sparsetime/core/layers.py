"""Building a sparsifier's layers: which weights are sparse, their initial masks, their stores.

Steps, all checks first so a bad argument leaves the model untouched: find sparse modules already
in the model (they keep their pattern); select the dense weights of the masked set; check that the
optimizer holds them; draw exact-count random masks from the per-layer densities (or take
``initial_masks``); plan the execution; then rescale the initial weights per unit (sparse-aware
init), convert the planned layers to sparse modules and wrap the rest in masked stores.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .distributed import broadcast_masks_, is_distributed
from .distributions import active_count, compute_densities
from .execution import plan_execution
from .masked_store import MaskedStore
from .masks import check_mask, random_mask, sparse_init_
from .options import SparsityOptions
from .selection import candidate_parameters, select_sparse_parameters
from .store import LayerStore, sparse_provider


@dataclass
class BuiltLayers:
    """The stores of every sparse layer in model order, and their target densities."""

    stores: dict[str, LayerStore]
    target_densities: dict[str, float | None]


def _select_dense(model: nn.Module, prebuilt: Mapping, opts: SparsityOptions) -> dict[str, nn.Parameter]:
    """The dense weights to sparsify; may be empty when the model already has sparse modules."""
    if prebuilt and not candidate_parameters(model) and not opts.extra_layers:
        return {}
    try:
        return select_sparse_parameters(model, opts.dense_layers, opts.dense_first, opts.dense_last,
                                        opts.extra_layers)
    except ValueError as exc:
        if prebuilt and "nothing is left to sparsify" in str(exc):
            return {}
        raise


def _check_optimizer(optimizer: torch.optim.Optimizer, params: Mapping[str, nn.Parameter],
                     prebuilt: Mapping[str, LayerStore]) -> None:
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    missing = [n for n, p in params.items() if id(p) not in held]
    missing += [n for n, s in prebuilt.items() if id(s.param) not in held]
    if missing:
        raise ValueError(f"the optimizer does not hold these sparse parameters of the model: {', '.join(missing)}; "
                         "build the optimizer from model.parameters() before the sparsifier")


def _check_initial_masks(params: Mapping[str, nn.Parameter], initial: Mapping[str, torch.Tensor]) -> dict:
    mine, theirs = set(params), set(initial)
    if mine != theirs:
        raise ValueError(f"initial_masks must have one mask per sparse layer: missing {sorted(mine - theirs)}, "
                         f"unexpected {sorted(theirs - mine)}")
    return {n: check_mask(n, initial[n], params[n].shape).to(params[n].device) for n in params}


def model_order(model: nn.Module) -> dict[str, int]:
    """Position of every parameter name (and ``<module>.weight`` of every module) in model order."""
    order: dict[str, int] = {}
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        order.setdefault(f"{prefix}weight", len(order))
        for pname, _ in module.named_parameters(recurse=False):
            order.setdefault(prefix + pname, len(order))
    return order


def _wrapper_names(model: nn.Module, kinds: tuple[str, ...]) -> list[str]:
    return [name or type(model).__name__ for name, m in model.named_modules() if type(m).__name__ in kinds]


def check_supported_wrappers(model: nn.Module) -> None:
    """Refuse sharded or model-parallel wrappers, whose parameters are not whole tensors."""
    sharded = _wrapper_names(model, ("FullyShardedDataParallel", "FSDPModule"))
    if sharded or any(type(p).__name__ in ("FlatParameter", "DTensor") for p in model.parameters()):
        raise ValueError(f"sharded models (FSDP, tensor parallelism: {sharded or 'sharded parameters'}) are not "
                         "supported: DynamicSparsity needs every sparse weight whole on every rank; allowed: a "
                         "plain model, or one wrapped in DistributedDataParallel")
    devices = {p.device for p in model.parameters()}
    if is_distributed() and len(devices) > 1:
        raise ValueError(f"model parallelism (parameters on {sorted(map(str, devices))}) is not supported in a "
                         "distributed run; allowed: data parallelism, every parameter of a rank on one device")


def check_not_wrapped(model: nn.Module) -> None:
    """Sparse execution replaces modules, which a DistributedDataParallel wrapper would not see."""
    wrapped = _wrapper_names(model, ("DistributedDataParallel",))
    if wrapped:
        raise ValueError("execution='sparse' replaces layers by sparse modules, which an existing "
                         "DistributedDataParallel wrapper would not see; build DynamicSparsity on the bare model, "
                         "then wrap it in DistributedDataParallel")


def build_layers(model: nn.Module, optimizer: torch.optim.Optimizer, opts: SparsityOptions,
                 initial_masks: Mapping[str, torch.Tensor] | None, generator: torch.Generator) -> BuiltLayers:
    """Validate, then build the stores (converting layers in place when they run sparse)."""
    check_supported_wrappers(model)
    provider = sparse_provider()
    prebuilt_modules = provider.prebuilt(model) if provider is not None else {}
    prebuilt = provider.wrap(prebuilt_modules, optimizer) if prebuilt_modules else {}
    params = _select_dense(model, prebuilt, opts)
    if initial_masks is None and opts.density is None and params:
        raise ValueError("density is required (a number in (0, 1]) unless initial_masks are given")
    _check_optimizer(optimizer, params, prebuilt)
    if initial_masks is not None:
        masks = {n: m.clone() for n, m in _check_initial_masks(params, initial_masks).items()}
        broadcast_masks_(masks)  # e.g. SNIP masks scored on each rank's own batches: rank 0's win
        densities = {n: m.sum().item() / m.numel() for n, m in masks.items()}
    elif params:
        densities = compute_densities({n: tuple(p.shape) for n, p in params.items()}, opts.density,
                                      opts.distribution, opts.erk_power)
        masks = {n: random_mask(tuple(p.shape), active_count(densities[n], p.numel()), generator, p.device)
                 for n, p in params.items()}
        broadcast_masks_(masks)  # rank 0's masks everywhere (no-op without a process group)
    else:
        masks, densities = {}, {}
    to_convert = plan_execution(model, params, densities, opts, provider, prebuilt)
    if to_convert:
        check_not_wrapped(model)

    # ---- commit: nothing above changed the model
    sparse_init = opts.sparse_init if opts.sparse_init is not None else initial_masks is None
    if sparse_init:
        for n, p in params.items():
            sparse_init_(p.data, masks[n])
    stores: dict[str, LayerStore] = dict(prebuilt)
    if to_convert:
        stores.update(provider.convert(model, optimizer, {n: masks[n] for n in to_convert}))
    for n, p in params.items():
        if n not in stores:
            stores[n] = MaskedStore(n, p, masks[n], optimizer)
    order = model_order(model)
    names = sorted(stores, key=lambda n: order.get(n, len(order)))
    targets: dict[str, float | None] = {**densities, **{n: s.count() / s.size for n, s in prebuilt.items()}}
    return BuiltLayers({n: stores[n] for n in names}, {n: targets[n] for n in names})
