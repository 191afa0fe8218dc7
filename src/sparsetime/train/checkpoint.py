"""Checkpoints and RNG state capture, written atomically.

Every file is written through :mod:`sparsetime.fileio` (a temporary sibling, flushed to disk and
renamed over the target), so a kill at any moment leaves either the old or the new file, never a
torn one. Checkpoints are read with ``torch.load(weights_only=True)``: they hold
only tensors and plain Python containers (RNG states included), never pickled code.
"""
from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparsetime.fileio import atomic_open, atomic_write_text, deferred_interrupts  # noqa: F401 (re-exported)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` ``state`` to ``path`` atomically; OSError naming the file when it cannot be
    written (a full disk makes torch raise a RuntimeError)."""
    with deferred_interrupts():
        try:
            with atomic_open(path, "wb") as fh:
                torch.save(state, fh)
        except RuntimeError as exc:
            raise OSError(f"cannot write the checkpoint {str(path)!r} (is the disk full?): {exc}") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc).split("WeightsUnpickler error:")[-1].split("Check the documentation")[0]
        raise ValueError(f"checkpoint {str(path)!r} cannot be loaded with weights_only=True (it is corrupt or "
                         f"holds objects other than tensors and plain containers): {' '.join(detail.split())}"
                         ) from None
    except (RuntimeError, EOFError) as exc:
        raise ValueError(f"checkpoint {str(path)!r} is not a readable torch file: {exc}") from None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {str(path)!r} does not hold a dict (got {type(state).__name__})")
    return state


def capture_rng_state() -> dict[str, Any]:
    """States of Python's, NumPy's and torch's (CPU and CUDA) global generators, as plain data."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "python": [version, list(internal), gauss_next],
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
