"""When truly sparse execution pays off (``execution="auto"``) and where it is available.

Thresholds come from ``bench/bench_kernels.py`` on a 2-core AVX2/AVX-512 CPU, 2 threads:
the numba linear kernels beat dense matmul for forward + both gradients from about 85-90%
sparsity on layers of a quarter million weights or more; smaller layers are dominated by
per-call overhead. The direct sparse convolution breaks even around 90% sparsity and wins clearly
from 95%. The torch fallback needs roughly three times sparser linear layers for the same gain
(and has no sparse convolution).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .backend import numba_available

#: density at or below which a large enough linear layer runs sparse under ``execution="auto"``
AUTO_MAX_DENSITY = 0.15
#: density at or below which a convolution runs sparse under ``execution="auto"`` (numba only)
AUTO_MAX_DENSITY_CONV = 0.05
#: minimum dense size (number of weights) of a layer for sparse execution under ``"auto"``
AUTO_MIN_WEIGHTS = 1 << 18


def sparse_execution_supported(device: torch.device | str) -> bool:
    """True where sparse kernels exist: CPU. On CUDA the engine should fall back to masked mode
    (with a warning) until CUDA kernels exist."""
    return torch.device(device).type == "cpu"


def prefer_sparse(weight_shape: Sequence[int], density: float, device: torch.device | str = "cpu") -> bool:
    """Whether ``execution="auto"`` should run a layer with this weight shape sparse.

    ``weight_shape``: (out, in) for Linear, (out, in, kh, kw) for Conv2d.
    """
    if not (0.0 < float(density) <= 1.0):
        raise ValueError(f"density must be in (0, 1], got {density!r}")
    shape = tuple(int(s) for s in weight_shape)
    if len(shape) not in (2, 4):
        raise ValueError(f"weight_shape must be (out, in) or (out, in, kh, kw), got {shape}")
    if not sparse_execution_supported(device) or math.prod(shape) < AUTO_MIN_WEIGHTS:
        return False
    if len(shape) == 4:
        return numba_available() and density <= AUTO_MAX_DENSITY_CONV
    limit = AUTO_MAX_DENSITY if numba_available() else AUTO_MAX_DENSITY / 3
    return density <= limit
