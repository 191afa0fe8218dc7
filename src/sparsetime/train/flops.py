"""FLOPs of sparse and dense networks.

Inference FLOPs are counted per example with forward hooks on one sample: every Linear/ConvNd
call costs 2 multiply-adds-to-FLOPs times (weights per output unit) times (outputs produced), so
convolutions count their output size and layers called twice count twice. ``nn.MultiheadAttention``
reads its projection weights without calling modules, so it is counted by its own hook: the input
projections (``in_proj_weight``, or ``q/k/v_proj_weight``) per query/key/value token and
``out_proj.weight`` per query token. A sparse layer costs its dense count times its density. Other
operations (activations, pooling, normalisation, biases, the attention products of activations)
are not counted, as in the RigL/ITOP accounting. Training FLOPs per step come from the
sparsity method's ``step_flops`` (the built-in rates are listed in :mod:`sparsetime.train.dst_methods`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

_COUNTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def count_layer_flops(model: nn.Module, input_shape: Sequence[int],
                      device: torch.device | str | None = None) -> dict[str, float]:
    """Dense inference FLOPs per example of every Linear/Conv layer, keyed by weight name.

    Runs one all-zero example of shape ``(1, *input_shape)`` through ``model`` in eval mode
    without gradients; the model's train/eval mode is restored afterwards.
    """
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"input_shape must be a non-empty sequence of positive ints, got {tuple(input_shape)!r}")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    counts: dict[str, float] = {}
    handles = []

    def hook(name: str):
        def record(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
            per_output = module.weight.numel() / module.weight.shape[0]
            outputs = output.numel()  # one example: all of its outputs, whatever the layout
            counts[name] = counts.get(name, 0.0) + 2.0 * per_output * outputs
        return record

    def attention_hook(prefix: str):
        def record(module: nn.MultiheadAttention, args: tuple, kwargs: dict, output: object) -> None:
            inputs = list(args) + [kwargs.get(k) for k in ("query", "key", "value")[len(args):]]
            tokens = [t.numel() / t.shape[-1] for t in inputs[:3]]  # one example: every token is its own
            e = module.embed_dim
            if module.in_proj_weight is not None:
                _add(f"{prefix}in_proj_weight", 2.0 * module.in_proj_weight.shape[1] * e * sum(tokens))
            else:
                for (kind, n), weight in zip(zip("qkv", tokens), (module.q_proj_weight, module.k_proj_weight,
                                                                   module.v_proj_weight)):
                    _add(f"{prefix}{kind}_proj_weight", 2.0 * weight.shape[1] * e * n)
            _add(f"{prefix}out_proj.weight", 2.0 * e * e * tokens[0])
        return record

    def _add(name: str, flops: float) -> None:
        counts[name] = counts.get(name, 0.0) + flops

    attention_children = set()
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        if isinstance(module, nn.MultiheadAttention):
            handles.append(module.register_forward_hook(attention_hook(prefix), with_kwargs=True))
            attention_children.add(id(module.out_proj))
        elif isinstance(module, _COUNTED) and id(module) not in attention_children:
            handles.append(module.register_forward_hook(hook(f"{prefix}weight")))
    was_training = model.training
    try:
        model.eval()
        # Gradients stay enabled (nothing is backpropagated): under no_grad, eval-mode transformer layers
        # take PyTorch's fused fast path, which calls no submodule, so no hook would see their layers.
        with torch.enable_grad():
            model(torch.zeros((1, *shape), device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return counts


def mask_densities(masks: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Fraction of active entries of each mask (one device sync per mask: call rarely)."""
    return {name: float(mask.sum().item()) / mask.numel() for name, mask in masks.items()}


def inference_flops(layer_flops: Mapping[str, float], densities: Mapping[str, float] | None = None) -> float:
    """Sum of per-layer FLOPs, each times its density (layers missing from ``densities`` are dense)."""
    densities = densities or {}
    unknown = set(densities) - set(layer_flops)
    if unknown:
        raise ValueError(f"densities name layers with no counted FLOPs: {sorted(unknown)}; "
                         f"counted layers: {sorted(layer_flops)}")
    return float(sum(f * densities.get(name, 1.0) for name, f in layer_flops.items()))


def density_for_flops(layer_flops: Mapping[str, float], shapes: Mapping[str, Sequence[int]], fraction: float,
                      distribution: str | Mapping[str, float] = "erk", erk_power: float = 1.0,
                      tolerance: float = 1e-6) -> float:
    """The global density d whose per-layer densities (``distribution`` over the sparse layers of
    ``shapes``) give inference FLOPs of ``fraction`` times dense.

    Layers counted in ``layer_flops`` but absent from ``shapes`` stay dense. The FLOPs grow with d,
    so d is found by bisection; ValueError when the dense layers alone exceed the budget.
    """
    from sparsetime.core.distributions import compute_densities

    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"flops_fraction must be in (0, 1], got {fraction!r}")
    total = sum(layer_flops.values())
    sparse = {n: tuple(s) for n, s in shapes.items() if n in layer_flops}

    def flops_at(d: float) -> float:
        return inference_flops(layer_flops, compute_densities(sparse, d, distribution, erk_power)) / total

    floor = (total - sum(layer_flops[n] for n in sparse)) / total
    if fraction <= floor + 1e-12:
        raise ValueError(f"flops_fraction {fraction} is below the {floor:.4f} of dense FLOPs that the dense layers "
                         "alone cost; raise it or sparsify more layers")
    if flops_at(1.0) <= fraction:
        return 1.0
    lo, hi = 0.0, 1.0
    while hi - lo > tolerance:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if flops_at(mid) < fraction else (lo, mid)
    return hi
