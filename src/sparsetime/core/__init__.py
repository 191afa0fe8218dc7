"""The sparsetime engine: masks, distributions, topology updates and exploration metrics (torch only)."""
from .criteria import (DropCriterion, GrowthCriterion, LayerView, register_drop, register_drop_selector,
                       register_growth, register_growth_criterion, register_growth_sampler)
from .distributions import compute_densities, layer_densities
from .masked_store import MaskedStore
from .presets import SET, SNFS, RigL
from .protocol import Sparsifier
from .selection import select_sparse_parameters
from .sparsifier import DynamicSparsity
from .store import LayerStore, register_sparse_provider
from .topk import select_topk

__all__ = ["DynamicSparsity", "SET", "RigL", "SNFS", "layer_densities", "compute_densities",
           "select_sparse_parameters", "select_topk", "register_growth", "register_drop", "LayerView",
           "register_growth_sampler", "register_drop_selector", "register_growth_criterion", "GrowthCriterion",
           "DropCriterion", "LayerStore", "MaskedStore", "register_sparse_provider", "Sparsifier"]
