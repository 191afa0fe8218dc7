"""Sparse modules: layers whose weights exist only as (values, indices), conversions, and the
sparse layer store that ``DynamicSparsity(execution="sparse")`` runs on (registered on import), and
sparse model files (CSR in safetensors)."""
from .attention import SelfAttention, replace_attention
from .base import SparseModule
from .convert import (dense_state_dict, densify, load_sparse_weights, replace_parameter, sparse_weights,
                      sparsify, stored_sparse_layers)
from .execution import SparseExecution, convert_to_sparse, why_not_convertible
from .export import load_sparse, read_sparse, save_sparse
from .layout_norm import LayoutBatchNorm2d, keep_layout_norms
from .layout_pool import LayoutMaxPool2d, keep_layout_pools
from .sparse_conv import SparseConv2d
from .sparse_linear import SparseLinear
from .sparse_store import SparseStore

__all__ = ["SparseLinear", "SparseConv2d", "SparseModule", "SparseStore", "SparseExecution", "sparsify", "densify",
           "dense_state_dict", "sparse_weights", "load_sparse_weights", "replace_parameter", "convert_to_sparse",
           "why_not_convertible", "save_sparse", "load_sparse", "read_sparse", "SelfAttention", "replace_attention",
           "LayoutBatchNorm2d", "keep_layout_norms", "LayoutMaxPool2d", "keep_layout_pools", "stored_sparse_layers"]
