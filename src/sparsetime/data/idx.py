"""Reader for the IDX format of (Fashion-)MNIST, gzipped or raw.

Layout: two zero bytes, a type code, the number of dimensions, each dimension as a
big-endian uint32, then the values in row-major order (big-endian for multi-byte types).
"""
from __future__ import annotations

import gzip
import zlib
import math
import struct
from pathlib import Path

import numpy as np

IDX_TYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Array stored in the IDX file ``path`` (gzip detected from the content, not the name)."""
    path = Path(path)
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as exc:  # truncated or corrupted download
            raise ValueError(f"{path} is a damaged gzip file ({exc}); delete it and download it again") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file: magic {data[:4].hex()!r}, expected 0000 + type + rank")
    code, ndim = data[2], data[3]
    if code not in IDX_TYPES:
        allowed = ", ".join(f"0x{c:02x}" for c in IDX_TYPES)
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}; allowed: {allowed}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes for {ndim} dimensions)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(IDX_TYPES[code])
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: IDX header says shape {dims} ({expected} bytes) but {len(data) - header} bytes follow"
        )
    array = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def find_idx_file(folder: Path, name: str) -> Path:
    """``folder/name`` or ``folder/name.gz``, whichever exists (raw first)."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"neither {folder / name} nor {folder / name}.gz exists")
