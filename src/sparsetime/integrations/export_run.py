"""``sparsetime export``: a run directory's model as a dense state_dict or a sparse safetensors file.

The model comes from the run's last checkpoint, without building the model or loading data.
Runs trained masked hold dense weights and the sparsifier's masks (read with the runner's mask
reader, for any sparsifier state: DST, GMP, lottery levels); runs trained with
``sparsity.execution=sparse`` hold each sparse layer as ``weight_values`` / ``row_ptr`` /
``col_idx``, with the dense shapes in the sparsifier state. ``dense`` writes a plain state_dict
(``torch.save``; load with ``torch.load(weights_only=True)`` and ``model.load_state_dict``);
``sparse`` writes :func:`sparsetime.nn.save_sparse`'s safetensors file.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from sparsetime.kernels.csr import flat_indices, validate_csr
from sparsetime.nn.export import save_sparse
from sparsetime.train.checkpoint import load_checkpoint, save_checkpoint
from sparsetime.train.init_masks import load_masks
from sparsetime.train.rundir import RunDir

FORMATS = ("dense", "sparse")
DEFAULT_NAMES = {"dense": "model.pt", "sparse": "model.safetensors"}
_MODULE_KEYS = ("weight_values", "row_ptr", "col_idx")


@dataclass
class ExportResult:
    """What was written: the file, its size, the raw size of the dense tensors, the checkpoint's epoch."""

    path: Path
    bytes: int
    dense_bytes: int
    epoch: int
    total_epochs: int
    sparse_layers: int


def _sparse_module_names(state: dict[str, torch.Tensor]) -> list[str]:
    """``X.weight`` of every sparse module in a model state_dict (keys X.weight_values/row_ptr/col_idx)."""
    names = []
    for key in state:
        if key.endswith("weight_values"):
            prefix = key[: -len("weight_values")]
            if all(prefix + k in state for k in _MODULE_KEYS):
                names.append(prefix + "weight")
    return names


def dense_model_state(state: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]]) -> OrderedDict:
    """``state`` with every sparse module's entries replaced by its dense ``X.weight`` (zeros elsewhere)."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        name = (f"{prefix}." if prefix else "") + "weight"
        if leaf not in _MODULE_KEYS or name not in shapes:
            out[key] = value
        elif leaf == "weight_values":
            base = key[: -len("weight_values")]
            shape = shapes[name]
            fan_in = math.prod(shape[1:])
            row_ptr, col_idx = state[base + "row_ptr"], state[base + "col_idx"]
            validate_csr(row_ptr, col_idx, (shape[0], fan_in))
            dense = torch.zeros(math.prod(shape), dtype=value.dtype)
            dense[flat_indices(row_ptr, col_idx, fan_in)] = value
            out[name] = dense.reshape(shape)
    return out


def export_run(run_dir: str | Path, fmt: str = "sparse", out: str | Path | None = None) -> ExportResult:
    """Write the model of ``run_dir``'s last checkpoint as ``fmt`` ("dense" or "sparse") to ``out``
    (default ``RUN_DIR/model.pt`` or ``RUN_DIR/model.safetensors``)."""
    if fmt not in FORMATS:
        raise ValueError(f"export format {fmt!r} is not supported; allowed: {', '.join(FORMATS)}")
    run = RunDir(run_dir)
    config = run.read_config()
    if not run.checkpoint_path.is_file():
        raise ValueError(f"run {str(run.path)!r} has no checkpoint yet (it has not finished an epoch); nothing to "
                         "export")
    checkpoint = load_checkpoint(run.checkpoint_path)
    state = checkpoint.get("model")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"checkpoint {str(run.checkpoint_path)!r} holds no model state_dict")
    masks = load_masks(run.checkpoint_path) if checkpoint.get("sparsifier") else {}
    shapes = {n: tuple(m.shape) for n, m in masks.items()}
    sparse_modules = _sparse_module_names(state)
    unknown = [n for n in sparse_modules if n not in shapes]
    if unknown:
        raise ValueError(f"checkpoint {str(run.checkpoint_path)!r} has sparse modules {unknown} without a shape in "
                         "its sparsifier state")
    dense = dense_model_state(state, shapes)
    path = Path(out) if out is not None else run.path / DEFAULT_NAMES[fmt]
    if fmt == "dense":
        save_checkpoint(path, dense)
    else:
        masked = {n: m for n, m in masks.items() if n in state}
        save_sparse(state, path, masks=masked, shapes=shapes)
    dense_bytes = sum(t.numel() * t.element_size() for t in dense.values())
    return ExportResult(path, path.stat().st_size, dense_bytes, int(checkpoint.get("epoch", 0)),
                        config.total_epochs, len(masks))
