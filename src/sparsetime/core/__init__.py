"""The sparsetime engine: masks, distributions, topology updates and exploration metrics."""
from .criteria import LayerView, register_drop, register_growth
from .distributions import compute_densities, layer_densities
from .presets import SET, SNFS, RigL
from .selection import select_sparse_parameters
from .sparsifier import DynamicSparsity
from .topk import select_topk

__all__ = ["DynamicSparsity", "SET", "RigL", "SNFS", "layer_densities", "compute_densities",
           "select_sparse_parameters", "select_topk", "register_growth", "register_drop", "LayerView"]
