"""Sparse model files: each sparse weight as CSR (values, column indices, row pointers) in safetensors.

:func:`save_sparse` writes one ``.safetensors`` file. A sparse weight named ``fc1.weight`` becomes
three tensors, ``fc1.weight.csr_values`` (the active values in their own dtype, row-major order
over the weight viewed as a matrix (out, fan_in)), ``fc1.weight.csr_col_indices`` and
``fc1.weight.csr_row_ptr`` (the smallest signed integer dtype that holds them: int16 column
indices for fan-ins below 32768), with its full shape in the file's metadata. Every other entry
of the state_dict (biases, dense layers, norm buffers) is stored as it is. Sparse weights are the
sparse modules of the model (:class:`SparseLinear`, :class:`SparseConv2d`) and the dense weights
named in ``masks``; a position is stored when its mask is True, so active weights that happen to
be exactly 0 (just grown) keep their place in the topology.

:func:`load_sparse` reads it back (safetensors holds no code, only tensors): into a plain dense
state_dict, into an instance of the model class (dense layers get the dense weight, sparse modules
their pattern), or, with ``sparse=True``, turning the stored layers of a dense model into sparse
modules. Every index read from a file is validated before use.
"""
from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..fileio import atomic_open
from ..kernels.csr import validate_csr
from .base import SparseModule
from .convert import sparsify

FORMAT = "sparsetime-sparse"
FORMAT_VERSION = "1"
PARTS = ("csr_values", "csr_col_indices", "csr_row_ptr")
_MODULE_KEYS = ("weight_values", "row_ptr", "col_idx")
State = Mapping[str, torch.Tensor]


def _safetensors():
    try:
        import safetensors.torch as st_torch
    except ImportError as exc:  # optional dependency
        raise ImportError("sparse model files need the safetensors package: pip install 'sparsetime[safetensors]'"
                          ) from exc
    return st_torch


def _index_dtype(largest: int) -> torch.dtype:
    """The smallest signed integer dtype holding 0..largest."""
    for dtype in (torch.int16, torch.int32):
        if largest <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def _csr_of_dense(name: str, weight: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    if weight.dim() < 1:
        raise ValueError(f"{name!r} is a scalar; only weights with at least one dimension can be stored as CSR")
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != tuple(weight.shape):
        raise ValueError(f"mask of {name!r} must be a bool tensor of the weight's shape {tuple(weight.shape)}, got "
                         f"{getattr(mask, 'dtype', type(mask).__name__)} {tuple(getattr(mask, 'shape', ()))}")
    rows = weight.shape[0]
    matrix, keep = weight.detach().reshape(rows, -1).cpu(), mask.reshape(rows, -1).cpu()
    entries = keep.nonzero()
    return _csr_parts(matrix[keep], entries[:, 1], keep.sum(1), matrix.shape[1])


def _csr_parts(values: torch.Tensor, cols: torch.Tensor, per_row: torch.Tensor, fan_in: int) -> dict[str, torch.Tensor]:
    row_ptr = torch.zeros(per_row.numel() + 1, dtype=torch.int64)
    row_ptr[1:] = per_row.long().cumsum(0)
    return {"csr_values": values.detach().cpu().contiguous().clone(),
            "csr_col_indices": cols.to(_index_dtype(max(fan_in - 1, 0))).contiguous(),
            "csr_row_ptr": row_ptr.to(_index_dtype(values.numel()))}


def _module_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {(f"{n}." if n else "") + "weight": tuple(m.weight_shape) for n, m in model.named_modules()
            if isinstance(m, SparseModule)}


def sparse_file_tensors(state: State, masks: Mapping[str, torch.Tensor] | None = None,
                        shapes: Mapping[str, tuple[int, ...]] | None = None
                        ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a sparse file for ``state`` (a state_dict).

    ``masks`` name the dense weights stored as CSR; sparse-module entries (``X.weight_values``,
    ``X.row_ptr``, ``X.col_idx``) are stored as the CSR weight ``X.weight`` of shape ``shapes[X.weight]``.
    """
    masks, shapes = dict(masks or {}), dict(shapes or {})
    unknown = sorted(set(masks) - set(state))
    if unknown:
        raise ValueError(f"masks name weights that are not in the state_dict: {unknown}; allowed: {sorted(state)}")
    tensors: dict[str, torch.Tensor] = {}
    layers: dict[str, list[int]] = {}
    order: list[str] = []
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        module_key = f"{prefix}." if prefix else ""
        if leaf in _MODULE_KEYS and all(module_key + k in state for k in _MODULE_KEYS):
            name = module_key + "weight"
            if leaf != "weight_values":
                continue
            if name not in shapes:
                raise ValueError(f"the sparse module entries of {name!r} need its dense shape (shapes[{name!r}])")
            shape = tuple(int(s) for s in shapes[name])
            fan_in = math.prod(shape[1:])
            row_ptr, col_idx = state[module_key + "row_ptr"].cpu(), state[module_key + "col_idx"].cpu()
            validate_csr(row_ptr, col_idx, (shape[0], fan_in))
            parts = _csr_parts(value, col_idx, row_ptr[1:].long() - row_ptr[:-1].long(), fan_in)
        elif key in masks:
            name, shape, parts = key, tuple(value.shape), _csr_of_dense(key, value, masks[key])
        else:
            tensors[key] = value.detach().cpu().contiguous().clone()
            order.append(key)
            continue
        layers[name] = list(shape)
        order.append(name)
        tensors.update({f"{name}.{part}": t for part, t in parts.items()})
    csr_keys = {f"{n}.{p}" for n in layers for p in PARTS}
    clash = sorted(csr_keys & {k for k in order if k not in layers})
    if clash:
        raise ValueError(f"state_dict keys {clash} collide with the names of stored CSR parts")
    metadata = {"format": FORMAT, "version": FORMAT_VERSION, "layers": json.dumps(layers),
                "order": json.dumps(order)}
    return tensors, metadata


def save_sparse(model: nn.Module | State, path: str | Path, masks: Mapping[str, torch.Tensor] | None = None,
                shapes: Mapping[str, tuple[int, ...]] | None = None) -> Path:
    """Write ``model`` (a module or a state_dict) to the safetensors file ``path``, atomically.

    Sparse modules are stored as CSR automatically; ``masks`` ({weight name: bool mask}, e.g.
    ``sparsifier.masks``) names the dense weights to store as CSR. A state_dict holding sparse
    module entries also needs ``shapes`` ({weight name: dense shape}). Returns the path.
    """
    if isinstance(model, nn.Module):
        shapes = {**_module_shapes(model), **dict(shapes or {})}
        state: State = model.state_dict()
    else:
        state = model
    tensors, metadata = sparse_file_tensors(state, masks, shapes)
    data = _safetensors().save(tensors, metadata=metadata)
    path = Path(path)
    with atomic_open(path, "wb") as fh:  # never a torn file
        fh.write(data)
    return path


# ----------------------------------------------------------------------------- reading

def read_sparse(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]], list[str]]:
    """(dense tensors, {weight name: {"shape", "values", "row_ptr", "col_idx"}}, key order) of a sparse
    file, every CSR layer validated. ValueError for a file that is not a sparsetime sparse file."""
    st_torch = _safetensors()
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"sparse model file {str(path)!r} does not exist")
    try:
        tensors = st_torch.load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for unreadable files
        raise ValueError(f"{str(path)!r} is not a readable safetensors file: {exc}") from None
    if metadata.get("format") != FORMAT or metadata.get("version") != FORMAT_VERSION:
        raise ValueError(f"{str(path)!r} is not a sparsetime sparse file (format {metadata.get('format')!r} version "
                         f"{metadata.get('version')!r}; expected {FORMAT!r} version {FORMAT_VERSION})")
    try:
        layers, order = json.loads(metadata["layers"]), json.loads(metadata["order"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"{str(path)!r} has unreadable metadata: {exc}") from None
    csr: dict[str, dict[str, torch.Tensor]] = {}
    for name, shape in layers.items():
        parts = {p: tensors.pop(f"{name}.{p}", None) for p in PARTS}
        if any(t is None for t in parts.values()):
            raise ValueError(f"{str(path)!r}: layer {name!r} lacks one of its CSR parts {PARTS}")
        shape = tuple(int(s) for s in shape)
        matrix = (shape[0], math.prod(shape[1:]))
        values, col_idx, row_ptr = parts["csr_values"], parts["csr_col_indices"], parts["csr_row_ptr"]
        try:
            validate_csr(row_ptr, col_idx, matrix)
        except ValueError as exc:
            raise ValueError(f"{str(path)!r}: layer {name!r} has a malformed CSR index: {exc}") from None
        if values.dim() != 1 or values.numel() != col_idx.numel():
            raise ValueError(f"{str(path)!r}: layer {name!r} has {values.numel()} values for {col_idx.numel()} "
                             "column indices")
        csr[name] = {"shape": shape, "values": values, "row_ptr": row_ptr.long(), "col_idx": col_idx.long()}
    if set(order) != set(tensors) | set(csr):
        raise ValueError(f"{str(path)!r}: the tensors do not match the file's key list")
    return tensors, csr, order


def _dense_weight(layer: Mapping[str, torch.Tensor]) -> torch.Tensor:
    shape = layer["shape"]
    fan_in = math.prod(shape[1:])
    rows = torch.repeat_interleave(torch.arange(shape[0]), layer["row_ptr"][1:] - layer["row_ptr"][:-1])
    dense = torch.zeros(math.prod(shape), dtype=layer["values"].dtype)
    dense[rows * fan_in + layer["col_idx"]] = layer["values"]
    return dense.reshape(shape)


def _mask(layer: Mapping[str, torch.Tensor]) -> torch.Tensor:
    ones = dict(layer, values=torch.ones(layer["values"].numel(), dtype=torch.bool))
    return _dense_weight(ones)


def load_sparse(path: str | Path, model: nn.Module | None = None, *, sparse: bool = False,
                strict: bool = True, backend: str | None = None) -> nn.Module | OrderedDict[str, torch.Tensor]:
    """Read a file written by :func:`save_sparse`.

    Without ``model``: the plain dense state_dict (zeros at inactive positions). With ``model`` (an
    instance of the model class): its weights are loaded (``strict`` as in ``load_state_dict``) and
    the model is returned; its sparse modules take the stored pattern, its dense layers the dense
    weight, and with ``sparse=True`` the stored ``nn.Linear``/``nn.Conv2d`` layers become
    ``SparseLinear``/``SparseConv2d`` modules holding exactly the stored positions.
    """
    dense, csr, order = read_sparse(path)
    if model is None:
        return OrderedDict((k, dense[k] if k in dense else _dense_weight(csr[k])) for k in order)
    modules = dict(model.named_modules())
    state: dict[str, torch.Tensor] = dict(dense)
    for name, layer in csr.items():
        prefix, _, leaf = name.rpartition(".")
        module = modules.get(prefix)
        if isinstance(module, SparseModule) and leaf == "weight":
            key = f"{prefix}." if prefix else ""
            state[key + "weight_values"] = layer["values"]
            state[key + "row_ptr"] = layer["row_ptr"].to(module.row_ptr.dtype)
            state[key + "col_idx"] = layer["col_idx"].to(module.col_idx.dtype)
        else:
            state[name] = _dense_weight(layer)
    model.load_state_dict(state, strict=strict)
    if sparse:
        to_convert = {n: _mask(layer) for n, layer in csr.items()
                      if not isinstance(modules.get(n.rpartition(".")[0]), SparseModule)}
        if to_convert:
            model = sparsify(model, to_convert, backend=backend)
    return model
