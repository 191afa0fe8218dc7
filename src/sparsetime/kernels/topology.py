"""Topology primitives on (index, value) arrays; they live in :mod:`sparsetime.core.index_sets`
(the engine uses them in both execution modes) and are re-exported here for the kernels API."""
from ..core.index_sets import (complement_sorted, drop_smallest, grow_unexplored, isin_sorted, merge_topology,
                               remap, remap_optimizer_state, sample_absent, union_sorted)

__all__ = ["complement_sorted", "drop_smallest", "grow_unexplored", "isin_sorted", "merge_topology", "remap",
           "remap_optimizer_state", "sample_absent", "union_sorted"]
