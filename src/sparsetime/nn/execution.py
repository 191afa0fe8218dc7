"""Sparse execution for the engine: which layers can run as sparse modules, and the conversion.

:class:`SparseExecution` is the :class:`~sparsetime.core.store.SparseProvider` that this package
registers with the core on import: it finds sparse modules already in a model, says why a layer
cannot run sparse, asks the kernel heuristics whether sparse is faster, and swaps ``nn.Linear`` /
``nn.Conv2d`` layers for sparse modules (moving the optimizer onto their values).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..core.criteria import GrowthCriterion
from ..core.store import LayerStore, register_sparse_provider
from ..kernels.heuristics import prefer_sparse, sparse_execution_supported
from .base import SparseModule
from .convert import replace_parameter, sparsify
from .layout_norm import enter_layout_after_dense_convs, keep_layout_norms
from .layout_pool import keep_layout_pools
from .sparse_conv import SparseConv2d
from .sparse_store import SparseStore

#: the dense layer types a sparse module can replace
CONVERTIBLE_TYPES = (nn.Linear, nn.Conv2d)
#: parents that read these children's ``.weight`` directly instead of calling them (None: any child);
#: a sparse module has no dense ``weight``, so such children stay masked
WEIGHT_READING_PARENTS: dict[type[nn.Module], tuple[str, ...] | None] = {
    nn.MultiheadAttention: None,  # out_proj.weight goes straight into F.multi_head_attention_forward
    nn.TransformerEncoderLayer: ("linear1", "linear2"),  # read by its (and TransformerEncoder's) fast path
}

#: how to get attention's projections sparse (appended to the reasons they stay masked)
ATTENTION_HINT = ("; st.nn.replace_attention(model) swaps nn.MultiheadAttention for st.nn.SelfAttention, "
                  "whose projections run sparse")


def weight_module_name(param_name: str) -> str | None:
    """``"fc1.weight"`` -> ``"fc1"`` (``"weight"`` -> ``""``); None for a parameter not named weight."""
    if param_name == "weight":
        return ""
    return param_name[: -len(".weight")] if param_name.endswith(".weight") else None


def _weight_reader(model: nn.Module, module_name: str) -> str | None:
    parent_name, _, child = module_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    for kind, children in WEIGHT_READING_PARENTS.items():
        if isinstance(parent, kind) and (children is None or child in children):
            return type(parent).__name__
    return None


def why_not_convertible(model: nn.Module, param_name: str) -> str | None:
    """None when the layer owning ``param_name`` can run as a sparse module, else the reason."""
    module_name = weight_module_name(param_name)
    if module_name == "":
        return "the model itself (a bare layer cannot be replaced in place; wrap it in nn.Sequential)"
    module = model.get_submodule(module_name) if module_name is not None else None
    if not isinstance(module, CONVERTIBLE_TYPES):
        kind = type(module).__name__ if module is not None else "parameter"
        hint = ATTENTION_HINT if param_name.endswith("in_proj_weight") else ""
        return f"{kind} (only nn.Linear and nn.Conv2d have sparse kernels){hint}"
    reader = _weight_reader(model, module_name)
    if reader is not None:
        hint = ATTENTION_HINT if reader == "MultiheadAttention" else ""
        return f"its parent {reader} reads its .weight directly (a sparse module has no dense weight){hint}"
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
    if any(isinstance(m, SparseConv2d) for m in converted.values()):
        keep_layout_norms(model)  # BatchNorm and max pooling between sparse convs then keep their CHWN
        keep_layout_pools(model)  # layout (no copies, no slow strided paths)
        enter_layout_after_dense_convs(model)  # and the stem's BatchNorm makes it CHWN once
    return converted


class SparseExecution:
    """The sparse execution provider of the engine (see :class:`~sparsetime.core.store.SparseProvider`)."""

    def prebuilt(self, model: nn.Module) -> dict[str, nn.Module]:
        return {f"{name}.weight" if name else "weight": m for name, m in model.named_modules()
                if isinstance(m, SparseModule)}

    def why_not(self, model: nn.Module, name: str, param: torch.Tensor, growth: GrowthCriterion) -> str | None:
        return why_not_convertible(model, name)

    def supports_device(self, device: torch.device) -> bool:
        return sparse_execution_supported(device)

    def prefers(self, shape: tuple[int, ...], density: float, device: torch.device) -> bool:
        return prefer_sparse(shape, density, device)

    def convert(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                masks: Mapping[str, torch.Tensor]) -> dict[str, LayerStore]:
        return self.wrap(convert_to_sparse(model, optimizer, masks), optimizer)

    def wrap(self, modules: Mapping[str, nn.Module], optimizer: torch.optim.Optimizer) -> dict[str, LayerStore]:
        return {n: SparseStore(n, m, optimizer) for n, m in modules.items()}


register_sparse_provider(SparseExecution())
