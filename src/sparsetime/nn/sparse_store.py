"""The sparse layer store: a :class:`SparseModule` (values + CSR indices), nothing dense.

The counterpart of :class:`sparsetime.core.masked_store.MaskedStore` behind the one
:class:`~sparsetime.core.store.LayerStore` interface. Pruned weights are not stored at all, so
they are exactly zero by construction and there is nothing to re-apply after an optimizer step;
weights, gradients and optimizer state are O(nnz). Topology changes move values, gradients and
optimizer state of surviving entries to their new CSR slots and start grown entries at 0.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..core.distributed import is_distributed
from ..core.index_sets import isin_sorted, merge_topology
from ..core.store import LayerStore
from .base import SparseModule


class SparseStore(LayerStore):
    """One sparse module driven by the engine; ``param`` is its ``weight_values``."""

    execution = "sparse"
    dense = False

    def __init__(self, name: str, module: SparseModule, optimizer: torch.optim.Optimizer) -> None:
        super().__init__(name, module.weight_shape)
        self.module = module
        self.optimizer = optimizer

    @property
    def param(self) -> torch.nn.Parameter:
        """The Parameter the optimizer updates (the active values)."""
        return self.module.weight_values

    def count(self) -> int:
        return self.module.nnz

    def active(self) -> torch.Tensor:
        return self.module.flat_indices()

    def values(self) -> torch.Tensor:
        return self.module.weight_values.detach()

    def active_grad(self) -> torch.Tensor | None:
        return self.module.weight_values.grad

    @property
    def device(self) -> torch.device:
        return self.module.weight_values.device

    def dense_mask(self) -> torch.Tensor:
        return self.module.dense_mask()

    @torch.no_grad()
    def replace(self, keep: torch.Tensor, grown: torch.Tensor) -> torch.Tensor:
        new_flat, src = merge_topology(self.module.flat_indices(), keep, grown)
        self.module.set_topology(new_flat, src, self.optimizer)
        return src

    @torch.no_grad()
    def set_active(self, flat: torch.Tensor) -> None:
        old = self.module.flat_indices()
        flat = flat.to(old.device).long()
        if torch.equal(old, flat):
            return
        pos = torch.searchsorted(old, flat).clamp_(max=max(old.numel() - 1, 0))
        src = torch.where(isin_sorted(old, flat), pos, torch.full_like(pos, -1))
        self.module.set_topology(flat, src, self.optimizer)

    def keep_dense_gradient(self, enabled: bool) -> None:
        """Keep the next backward's input and output gradient (what RigL's scores come from)."""
        self.module.capture_gradient_inputs(enabled)

    def gradient_topk(self, k: int, excluded: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor],
                      generator: torch.Generator) -> torch.Tensor:
        """The k positions outside ``excluded`` with the largest ``transform(dL/dW)``, scored in row
        blocks of the captured mini-batch (no dense-sized temporary). Under a process group the
        captured inputs and output gradients of every rank are gathered first, so the scores are
        those of the global batch (DDP only averages the gradient of the values)."""
        if is_distributed():
            self.module.gather_captured()
        return self.module.dense_gradient_topk(k, excluded, generator, transform)
