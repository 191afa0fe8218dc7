"""Truly sparse execution: CSR index, sparse products (numba or torch), topology primitives.

Numba is a default dependency; without it, or with ``SPARSETIME_DISABLE_NUMBA=1``, every
product falls back to torch sparse ops.
"""
from .backend import get_backend, numba_available, resolve_backend, set_backend
from .conv import SparseConv2dFunction, sparse_conv2d
from .csr import CSRPattern, flat_indices, pattern_from_flat, pattern_from_mask, validate_csr
from .gradient_growth import gradient_growth
from .heuristics import prefer_sparse, sparse_execution_supported
from .linear import SparseLinearFunction, sparse_linear
from .ops import sddmm_t, spmm_t
from .topology import (complement_sorted, drop_smallest, grow_unexplored, isin_sorted, merge_topology,
                       remap, remap_optimizer_state, sample_absent, union_sorted)

__all__ = [
    "CSRPattern", "pattern_from_flat", "pattern_from_mask", "flat_indices", "validate_csr",
    "sparse_linear", "SparseLinearFunction", "spmm_t", "sddmm_t", "sparse_conv2d", "SparseConv2dFunction",
    "numba_available", "set_backend", "get_backend", "resolve_backend",
    "drop_smallest", "sample_absent", "grow_unexplored", "merge_topology", "remap",
    "remap_optimizer_state", "union_sorted", "complement_sorted", "isin_sorted", "gradient_growth",
    "prefer_sparse", "sparse_execution_supported",
]
