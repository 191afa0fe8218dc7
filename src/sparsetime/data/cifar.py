"""Reader for the CIFAR-10/100 "python version" batches, without unpickling arbitrary code.

The batches are pickles of dicts holding a uint8 array ``data`` (N x 3072, channel planes
R, G, B, each 32x32 row-major) and a list of labels. A restricted unpickler resolves only
the few numpy/codec globals such files contain, so a crafted file cannot run code.
"""
from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}
if hasattr(_numeric, "_frombuffer"):
    _SAFE_GLOBALS[("numpy.core.numeric", "_frombuffer")] = _numeric._frombuffer
    _SAFE_GLOBALS[("numpy._core.numeric", "_frombuffer")] = _numeric._frombuffer


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: CIFAR batches hold only arrays, lists and bytes"
            ) from None


def _get(batch: dict, key: bytes) -> Any:
    for candidate in (key, key.decode()):
        if candidate in batch:
            return batch[candidate]
    raise ValueError(f"CIFAR batch has no {key.decode()!r} entry; keys: {sorted(map(str, batch))}")


def read_cifar_batch(path: str | Path, label_key: bytes = b"labels") -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 from one batch file."""
    path = Path(path)
    with open(path, "rb") as handle:
        try:
            batch = _RestrictedUnpickler(handle, encoding="bytes").load()
        except pickle.UnpicklingError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, MemoryError) as exc:
            raise ValueError(f"{path} is not a readable CIFAR batch file (empty, truncated or damaged: "
                             f"{type(exc).__name__}); delete it and download it again") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a dict, found {type(batch).__name__}")
    data = np.asarray(_get(batch, b"data"))
    labels = np.asarray(_get(batch, label_key), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: data must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{path}: {labels.shape[0]} labels for {data.shape[0]} images")
    return data.reshape(-1, 3, 32, 32).copy(), labels


def read_cifar_split(folder: Path, files: list[str], label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate several batch files of one split."""
    parts = [read_cifar_batch(folder / name, label_key) for name in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
