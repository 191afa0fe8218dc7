"""sparsetime: sparse neural networks trained sparse from scratch (DST, ITOP, pruning baselines)."""
import logging

from .core import (SET, SNFS, DynamicSparsity, LayerView, RigL, compute_densities, layer_densities,
                   register_drop, register_growth, select_sparse_parameters, select_topk)

from . import nn as _sparse_execution  # noqa: F401  registers the sparse layer store with the core

__version__ = "0.1.0"
logging.getLogger("sparsetime").addHandler(logging.NullHandler())


def __getattr__(name: str):
    """Import the other subpackages lazily (``st.pruning``, ``st.train``, ...) so the engine stays light."""
    import importlib

    if name in ("pruning", "nn", "models", "data", "train", "kernels"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'sparsetime' has no attribute {name!r}")


__all__ = ["DynamicSparsity", "SET", "RigL", "SNFS", "layer_densities", "compute_densities",
           "select_sparse_parameters", "select_topk", "register_growth", "register_drop", "LayerView",
           "__version__"]
