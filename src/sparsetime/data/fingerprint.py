"""What data a run was trained on: a fingerprint of the dataset's files, to compare later.

``data_dir`` is not part of a run's identity (the same data may live anywhere), so without a
record a finished run would be reported, or a run resumed, on other data. The fingerprint lists
each file the dataset is read from, with its size and the SHA-256 of its first 64 KiB; for an
image folder, the number of images and bytes of each split and a hash of their relative paths.
Synthetic data is generated from its options and needs none.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from .catalog import dataset_info
from .locate import locate_dataset

HEAD_BYTES = 1 << 16


def _head_digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read(HEAD_BYTES)).hexdigest()[:16]


def _folder_summary(folder: Path) -> dict[str, Any]:
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    names = hashlib.sha256("\n".join(str(p.relative_to(folder)) for p in paths).encode()).hexdigest()[:16]
    return {"files": len(paths), "bytes": sum(p.stat().st_size for p in paths), "paths": names}


def dataset_fingerprint(name: str, data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """{file or split: its fingerprint} of dataset ``name`` as found locally ({} when it is not
    found yet, e.g. before its download, or is synthetic)."""
    info = dataset_info(name)
    folder = locate_dataset(name, data_dir)
    if folder is None:
        return {}
    out: dict[str, Any] = {}
    for required in info.required:
        path = folder / required
        if info.kind == "imagefolder":
            out[required] = _folder_summary(path)
            continue
        if not path.is_file():
            path = path.with_name(required + ".gz")
        out[path.name] = {"bytes": path.stat().st_size, "head_sha256": _head_digest(path)}
    return out


def fingerprint_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between two fingerprints (empty when they agree)."""
    diffs = []
    for key in sorted(set(saved) | set(current)):
        if saved.get(key) != current.get(key):
            diffs.append(f"{key}: trained on {saved.get(key, 'absent')}, now {current.get(key, 'absent')}")
    return diffs
