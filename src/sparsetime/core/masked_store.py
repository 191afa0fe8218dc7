"""The masked layer store: a dense weight times a bool mask, with optimizer state kept at zero.

Works for any parameter on any device. After an optimizer step, :meth:`MaskedStore.after_step`
zeroes the inactive weights and every optimizer state tensor shaped like the weight (momentum,
Adam's moments), so weight decay and momentum never revive a pruned weight. With the gradient
masking hook (see :mod:`sparsetime.core.gradients`) zero-preserving optimizers never write there
and the per-step re-mask is skipped.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .index_sets import merge_topology, mask_from_indices
from .store import LayerStore


class MaskedStore(LayerStore):
    """Dense weight ``param`` with a bool ``mask`` of its shape."""

    execution = "masked"
    dense = True

    def __init__(self, name: str, param: nn.Parameter, mask: torch.Tensor,
                 optimizer: torch.optim.Optimizer) -> None:
        super().__init__(name, param.shape)
        self.param = param
        self.optimizer = optimizer
        self.set_mask(mask)

    # ---- the active set
    def set_mask(self, mask: torch.Tensor) -> None:
        """Install a new mask (copied); weights are not touched until :meth:`after_step`."""
        p = self.param
        self.mask = mask.to(device=p.device, dtype=torch.bool).clone()
        self._float_mask = self.mask.to(p.dtype)  # 0/1 in the weight's dtype: mul_ is the fastest re-mask
        self._active = self.mask.reshape(-1).nonzero().squeeze(1)

    def count(self) -> int:
        return self._active.numel()

    def active(self) -> torch.Tensor:
        return self._active

    def values(self) -> torch.Tensor:
        return self.param.detach().reshape(-1)[self._active]

    def active_grad(self) -> torch.Tensor | None:
        grad = self.param.grad
        return None if grad is None else grad.reshape(-1)[self._active]

    @property
    def device(self) -> torch.device:
        return self.param.device

    def dense_mask(self) -> torch.Tensor:
        """The live mask (updated in place by :meth:`replace`; clone it to keep a copy)."""
        return self.mask

    def state_tensors(self) -> list[torch.Tensor]:
        """Every optimizer state tensor shaped like the weight (momentum, exp_avg, exp_avg_sq, ...)."""
        p = self.param
        state = self.optimizer.state.get(p)
        if not state:
            return []
        return [v for v in state.values() if isinstance(v, torch.Tensor) and v.shape == p.shape]

    # ---- changing it
    @torch.no_grad()
    def replace(self, keep: torch.Tensor, grown: torch.Tensor) -> torch.Tensor:
        old = self._active
        new_flat, src = merge_topology(old, keep, grown)
        dropped_local = torch.ones(old.numel(), dtype=torch.bool, device=old.device)
        dropped_local[keep] = False
        dropped = old[dropped_local]
        for m, off in ((self.mask.view(-1), False), (self._float_mask.view(-1), 0.0)):
            m[dropped] = off
        self.mask.view(-1)[grown] = True
        self._float_mask.view(-1)[grown] = 1.0
        self._active = new_flat
        changed = torch.cat([dropped, grown])
        for t in (self.param.data, *self.state_tensors()):
            t.view(-1)[changed.to(t.device)] = 0.0
        return src

    @torch.no_grad()
    def set_active(self, flat: torch.Tensor) -> None:
        self.set_mask(mask_from_indices(flat, self.shape, self.param.device))
        self.after_step()

    # ---- hygiene
    @torch.no_grad()
    def after_step(self) -> None:
        MaskedStore.after_step_all([self])

    @classmethod
    @torch.no_grad()
    def after_step_all(cls, stores: Sequence["MaskedStore"]) -> None:
        """Zero inactive weights and their optimizer state: one fused multiply over all stores."""
        tensors, masks = [], []
        for store in stores:
            m = store._float_mask
            for t in (store.param.data, *store.state_tensors()):
                tensors.append(t)
                masks.append(m if t.dtype == m.dtype else m.to(t.dtype))
        if tensors:
            torch._foreach_mul_(tensors, masks)

    @torch.no_grad()
    def mask_grad(self) -> None:
        """Zero the gradient at inactive positions (the gradient-masking fast path)."""
        grad = self.param.grad
        if grad is not None:
            grad.mul_(self._float_mask)
