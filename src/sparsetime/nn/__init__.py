"""Sparse modules: layers whose weights exist only as (values, indices), and conversions."""
from .convert import (dense_state_dict, densify, load_sparse_weights, replace_parameter, sparse_weights,
                      sparsify)
from .base import SparseModule
from .sparse_conv import SparseConv2d
from .sparse_linear import SparseLinear
from .topology import GROWTH_MODES, TopologyUpdate, prune_and_grow

__all__ = ["SparseLinear", "SparseConv2d", "SparseModule", "sparsify", "densify", "dense_state_dict", "sparse_weights",
           "load_sparse_weights", "replace_parameter", "prune_and_grow", "TopologyUpdate", "GROWTH_MODES"]
