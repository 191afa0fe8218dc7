"""Conversions between models with sparse modules and plain dense / torch-sparse weights.

* :func:`sparsify` -- replace ``nn.Linear`` / ``nn.Conv2d`` layers by sparse modules given masks;
* :func:`densify` -- replace every sparse module by the equivalent dense module;
* :func:`dense_state_dict` -- a plain state_dict (``name.weight`` dense) loadable into the dense
  architecture, without building a dense model;
* :func:`sparse_weights` / :func:`load_sparse_weights` -- weights as torch sparse tensors, and back;
* :func:`replace_parameter` -- move an optimizer from a dense weight to a sparse module's values;
* :func:`stored_sparse_layers` -- which layers a saved state_dict holds as sparse modules.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn

from .base import SparseModule
from .sparse_conv import SparseConv2d
from .sparse_linear import SparseLinear

_DENSE_TYPES = (nn.Linear, nn.Conv2d)


def _module_name(key: str) -> str:
    return key[: -len(".weight")] if key.endswith(".weight") else key


def stored_sparse_layers(state_dict: Mapping[str, object]) -> frozenset[str]:
    """Weight names (``"fc1.weight"``) of the sparse modules a model's ``state_dict()`` was saved with
    (each stores ``weight_values``, ``row_ptr`` and ``col_idx``): the plan to pass as
    ``DynamicSparsity(sparse_layers=...)`` so that the rebuilt model loads that state_dict."""
    suffix = "weight_values"
    return frozenset(key[: -len(suffix)] + "weight" for key in state_dict
                     if key.endswith(suffix) and (key == suffix or key.endswith("." + suffix))
                     and key[: -len(suffix)] + "row_ptr" in state_dict)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _to_sparse(mod: nn.Module, mask: torch.Tensor | None, backend: str | None) -> SparseModule:
    if isinstance(mod, nn.Linear):
        return SparseLinear.from_dense(mod, mask, backend=backend)
    return SparseConv2d.from_dense(mod, mask, backend=backend)


def sparsify(model: nn.Module, masks: Mapping[str, torch.Tensor], backend: str | None = None) -> nn.Module:
    """Replace, in place, each ``nn.Linear``/``nn.Conv2d`` named in ``masks`` (module name or
    ``name.weight``) by a sparse module holding its weights at the mask's True positions.
    Returns the model (or the new module when the model itself is named by ``""``)."""
    modules = dict(model.named_modules())
    for key, mask in masks.items():
        name = _module_name(key)
        mod = modules.get(name)
        if not isinstance(mod, _DENSE_TYPES):
            allowed = [n for n, m in modules.items() if isinstance(m, _DENSE_TYPES)]
            raise ValueError(f"mask key {key!r} does not name an nn.Linear or nn.Conv2d; allowed: {allowed}")
        new = _to_sparse(mod, mask, backend)
        if name == "":
            return new
        _replace(model, name, new)
    return model


def _dense_module(mod: SparseModule) -> nn.Module:
    dev, dtype = mod.weight_values.device, mod.weight_values.dtype
    has_bias = mod.bias is not None
    if isinstance(mod, SparseConv2d):
        dense = nn.Conv2d(mod.in_channels, mod.out_channels, mod.kernel_size, mod.stride, mod.padding,
                          mod.dilation, bias=has_bias, device=dev, dtype=dtype)
    else:
        dense = nn.Linear(mod.weight_shape[1], mod.weight_shape[0], bias=has_bias, device=dev, dtype=dtype)
    with torch.no_grad():
        dense.weight.copy_(mod.to_dense())
        if has_bias:
            dense.bias.copy_(mod.bias)
    return dense


def densify(model: nn.Module) -> nn.Module:
    """Replace, in place, every sparse module by its dense equivalent; returns the model."""
    if isinstance(model, SparseModule):
        return _dense_module(model)
    for name, mod in list(model.named_modules()):
        if isinstance(mod, SparseModule):
            _replace(model, name, _dense_module(mod))
    return model


def dense_state_dict(model: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """The state_dict of the dense twin of ``model`` (sparse module -> ``weight`` + ``bias``)."""
    sparse = {name: m for name, m in model.named_modules() if isinstance(m, SparseModule)}
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in model.state_dict().items():
        mod_name, _, leaf = key.rpartition(".")
        if mod_name in sparse or (mod_name == "" and "" in sparse):
            if leaf == "weight_values":
                out[(mod_name + "." if mod_name else "") + "weight"] = sparse[mod_name].to_dense().detach().clone()
            elif leaf not in ("row_ptr", "col_idx"):
                out[key] = value
        else:
            out[key] = value
    return out


def sparse_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{"<module>.weight": torch sparse tensor}``: CSR for SparseLinear, COO (4-D) for SparseConv2d."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, SparseModule):
            key = f"{name}.weight" if name else "weight"
            out[key] = m.to_sparse_csr() if isinstance(m, SparseLinear) else m.to_sparse_coo()
    return out


def load_sparse_weights(model: nn.Module, weights: Mapping[str, torch.Tensor],
                        backend: str | None = None) -> nn.Module:
    """Install sparse tensors (from :func:`sparse_weights`) into the dense or sparse layers of the
    same names, in place, turning them into sparse modules; biases are kept."""
    modules = dict(model.named_modules())
    for key, w in weights.items():
        name = _module_name(key)
        mod = modules.get(name)
        if not isinstance(mod, (*_DENSE_TYPES, SparseModule)):
            raise ValueError(f"weight key {key!r} does not name a Linear/Conv2d or sparse layer")
        if w.layout not in (torch.sparse_coo, torch.sparse_csr):
            raise ValueError(f"{key}: expected a sparse COO or CSR tensor, got layout {w.layout}")
        if isinstance(mod, SparseModule):
            mod = _dense_module(mod)
        if tuple(w.shape) != tuple(mod.weight.shape):
            raise ValueError(f"{key}: shape {tuple(w.shape)} does not match the layer's {tuple(mod.weight.shape)}")
        dense = w.to_dense().to(mod.weight.device, mod.weight.dtype)
        mask = torch.zeros(w.shape, dtype=torch.bool, device=dense.device)
        coo = w.to_sparse_coo().coalesce() if w.layout == torch.sparse_csr else w.coalesce()
        mask[tuple(coo.indices())] = True
        with torch.no_grad():
            mod.weight.copy_(dense)
        new = _to_sparse(mod, mask, backend)
        if name == "":
            return new
        _replace(model, name, new)
    return model


def replace_parameter(optimizer: torch.optim.Optimizer, old: torch.Tensor, new: torch.Tensor,
                      index: torch.Tensor | None = None) -> None:
    """Make ``optimizer`` update ``new`` instead of ``old`` (e.g. after :func:`sparsify`).

    Per-weight state tensors of ``old`` (momentum, exp_avg, ...) are carried over as
    ``state.reshape(-1)[index]`` -- pass the sparse module's ``flat_indices()``; scalar state
    (Adam's ``step``) is kept. With ``index`` None the state moves unchanged when the shapes
    agree (e.g. a bias) and is dropped altogether otherwise.
    """
    found = False
    for group in optimizer.param_groups:
        for i, p in enumerate(group["params"]):
            if p is old:
                group["params"][i] = new
                found = True
    if not found:
        raise ValueError("the old parameter is not in the optimizer's param_groups")
    state = optimizer.state.pop(old, None)
    if not state or (index is None and new.shape != old.shape):
        return
    if index is None:
        optimizer.state[new] = state
        return
    moved = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.shape == old.shape and value.dim() > 0:
            moved[key] = value.reshape(-1)[index.to(value.device)].clone()
        else:
            moved[key] = value
    optimizer.state[new] = moved
