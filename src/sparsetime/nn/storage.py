"""Where ``DynamicSparsity(execution="sparse")`` keeps its layers: sparse modules, nothing dense.

:class:`SparseStorage` is the sparse counterpart of :class:`sparsetime.core.storage.MaskedStorage`:
each layer is a :class:`SparseModule` (values + CSR indices), so no dense weight, dense mask or
dense optimizer state exists. Pruned weights are not stored at all, which is the strongest form of
"kept at exactly zero" (SPEC §3), so there is nothing to re-apply after an optimizer step.
:func:`convert_to_sparse` swaps masked ``nn.Linear``/``nn.Conv2d`` layers of a model for sparse
modules and moves the optimizer onto their values.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from ..core.index_sets import isin_sorted, merge_topology
from .base import SparseModule
from .convert import replace_parameter, sparsify

#: the dense layer types a sparse module can replace
CONVERTIBLE_TYPES = (nn.Linear, nn.Conv2d)


def weight_module_name(param_name: str) -> str | None:
    """``"fc1.weight"`` -> ``"fc1"`` (``"weight"`` -> ``""``); None for a parameter not named weight."""
    if param_name == "weight":
        return ""
    return param_name[: -len(".weight")] if param_name.endswith(".weight") else None


def why_not_convertible(model: nn.Module, param_name: str) -> str | None:
    """None when the layer owning ``param_name`` can run as a sparse module, else the reason."""
    module_name = weight_module_name(param_name)
    if module_name == "":
        return "the model itself (a bare layer cannot be replaced in place; wrap it in nn.Sequential)"
    module = model.get_submodule(module_name) if module_name is not None else None
    if not isinstance(module, CONVERTIBLE_TYPES):
        kind = type(module).__name__ if module is not None else "parameter"
        return f"{kind} (only nn.Linear and nn.Conv2d have sparse kernels)"
    sharing = [n for n, m in model.named_modules() if m is not module and getattr(m, "weight", None) is module.weight]
    if sharing:
        return f"weight tied with {', '.join(sharing)} (a sparse module cannot share its values)"
    if isinstance(module, nn.Conv2d) and (module.groups != 1 or module.padding_mode != "zeros"
                                          or isinstance(module.padding, str)):
        return (f"Conv2d with groups={module.groups}, padding_mode={module.padding_mode!r}, "
                f"padding={module.padding!r} (sparse convolution needs groups=1, zero numeric padding)")
    return None


def convert_to_sparse(model: nn.Module, optimizer: torch.optim.Optimizer,
                      masks: Mapping[str, torch.Tensor]) -> dict[str, SparseModule]:
    """Replace, in place, the layers whose weights are named in ``masks`` by sparse modules
    holding the weights at the mask's True positions; returns {weight name: sparse module}.

    The optimizer is moved from each dense weight to the module's ``weight_values`` (per-weight
    state such as momentum is gathered at the active positions). Biases stay the same Parameter
    objects, so optimizer param groups and any other reference to them remain valid.
    """
    converted: dict[str, SparseModule] = {}
    for name, mask in masks.items():
        module_name = weight_module_name(name)
        dense = model.get_submodule(module_name)
        old_weight, old_bias = dense.weight, dense.bias
        sparsify(model, {name: mask})
        new = model.get_submodule(module_name)
        if old_bias is not None:
            new.bias = old_bias
        replace_parameter(optimizer, old_weight, new.weight_values, new.flat_indices())
        converted[name] = new
    return converted


class SparseStorage:
    """Layers executed sparse: {weight name: sparse module}, plus the optimizer that owns them."""

    def __init__(self, layers: Mapping[str, SparseModule], optimizer: torch.optim.Optimizer) -> None:
        self.layers = dict(layers)
        self.optimizer = optimizer

    def __contains__(self, name: str) -> bool:
        return name in self.layers

    def count(self, name: str) -> int:
        return self.layers[name].nnz

    def size(self, name: str) -> int:
        return math.prod(self.layers[name].weight_shape)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.layers[name].weight_shape)

    def active(self, name: str) -> torch.Tensor:
        """Sorted int64 flat indices of the active weights (CSR order)."""
        return self.layers[name].flat_indices()

    def values(self, name: str) -> torch.Tensor:
        """The active weights, aligned with :meth:`active`."""
        return self.layers[name].weight_values.detach()

    def dense_mask(self, name: str) -> torch.Tensor:
        """Bool mask of the weight's shape (materialised: O(size) memory)."""
        return self.layers[name].dense_mask()

    @torch.no_grad()
    def update(self, name: str, keep: torch.Tensor, grown: torch.Tensor) -> torch.Tensor:
        """Keep entries ``keep`` (positions into :meth:`active`) and add the sorted flat positions
        ``grown`` at exactly 0, with zero optimizer state; returns the new entries' sources."""
        layer = self.layers[name]
        new_flat, src = merge_topology(layer.flat_indices(), keep, grown)
        layer.set_topology(new_flat, src, self.optimizer)
        return src

    @torch.no_grad()
    def set_active(self, name: str, flat: torch.Tensor) -> None:
        """Switch to the sorted positions ``flat``: entries already active keep value and state."""
        layer = self.layers[name]
        old = layer.flat_indices()
        flat = flat.to(old.device).long()
        if torch.equal(old, flat):
            return
        pos = torch.searchsorted(old, flat).clamp_(max=max(old.numel() - 1, 0))
        src = torch.where(isin_sorted(old, flat), pos, torch.full_like(pos, -1))
        layer.set_topology(flat, src, self.optimizer)

    def capture_gradients(self, enabled: bool) -> None:
        """Keep (or stop keeping) what the next backward needs for RigL's gradient scores."""
        for layer in self.layers.values():
            layer.capture_gradient_inputs(enabled)

    def gradient_topk(self, name: str, k: int, excluded: torch.Tensor,
                      generator: torch.Generator) -> torch.Tensor:
        """RigL growth: the k positions outside ``excluded`` with the largest |dL/dW| of the last
        captured mini-batch, scored in row blocks (no dense-sized temporary)."""
        return self.layers[name].dense_gradient_topk(k, excluded, generator)
