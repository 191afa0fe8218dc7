"""Where the weights of layers executed masked, and their optimizer state, live.

:class:`MaskedStorage` keeps each weight as a dense tensor plus a bool mask and enforces SPEC §3
after every optimizer step. Layers executed sparse live in
:class:`sparsetime.nn.storage.SparseStorage` (values + CSR indices) instead; the update step in
:mod:`sparsetime.core.sparsifier` talks to both through sorted flat indices of active weights.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn


class MaskedStorage:
    """Dense weight * bool mask, with optimizer state zeroed at inactive positions."""

    def __init__(self, params: dict[str, nn.Parameter], masks: dict[str, torch.Tensor],
                 optimizer: torch.optim.Optimizer) -> None:
        self.params = params
        self.optimizer = optimizer
        self.masks: dict[str, torch.Tensor] = {}
        self._float_masks: dict[str, torch.Tensor] = {}  # 0/1 in the weight's dtype: mul_ is the fastest re-mask
        for name, mask in masks.items():
            self.set_mask(name, mask)

    def names(self) -> Iterator[str]:
        return iter(self.params)

    def weight(self, name: str) -> torch.Tensor:
        return self.params[name]

    def mask(self, name: str) -> torch.Tensor:
        return self.masks[name]

    def set_mask(self, name: str, mask: torch.Tensor) -> None:
        p = self.params[name]
        mask = mask.to(device=p.device, dtype=torch.bool)
        self.masks[name] = mask
        self._float_masks[name] = mask.to(p.dtype)

    def state_tensors(self, name: str) -> list[torch.Tensor]:
        """Every optimizer state tensor shaped like the weight (momentum, exp_avg, exp_avg_sq, ...)."""
        p = self.params[name]
        state = self.optimizer.state.get(p)
        if not state:
            return []
        return [v for v in state.values() if isinstance(v, torch.Tensor) and v.shape == p.shape]

    @torch.no_grad()
    def apply(self) -> None:
        """Zero inactive weights and their optimizer state: one fused multiply over all of them."""
        tensors, masks = [], []
        for name, p in self.params.items():
            m = self._float_masks[name]
            for t in (p, *self.state_tensors(name)):
                tensors.append(t.data if isinstance(t, torch.nn.Parameter) else t)
                masks.append(m if t.dtype == m.dtype else m.to(t.dtype))
        if tensors:
            torch._foreach_mul_(tensors, masks)

    @torch.no_grad()
    def mask_grad(self, name: str) -> None:
        """Zero the gradient at inactive positions (used by the gradient-masking fast path)."""
        grad = self.params[name].grad
        if grad is not None:
            grad.mul_(self._float_masks[name])

    @torch.no_grad()
    def zero_positions(self, name: str, flat_idx: torch.Tensor) -> None:
        """Set weight and optimizer state to exactly 0 at ``flat_idx`` (newly grown weights)."""
        if flat_idx.numel() == 0:
            return
        p = self.params[name]
        hit = torch.zeros(p.numel(), dtype=torch.bool, device=p.device)
        hit[flat_idx.to(p.device)] = True
        hit = hit.view(p.shape)
        for t in [p, *self.state_tensors(name)]:
            t.masked_fill_(hit, 0.0)
