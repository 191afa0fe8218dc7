"""Gradient machinery of the engine: masking hooks, dense gradients for growth, accumulation, EMA.

* Gradient masking (fast path): a post-accumulate-grad hook zeroes the gradient of a masked layer
  at inactive positions, one pass over it; optimizers that map (weight 0, grad 0, state 0) to 0
  then never write there and the per-step re-mask of weights and state is skipped.
* Steps whose dense gradient is read -- the update step, and for ``grad_accumulation = g > 1``
  the last g steps before it -- keep the dense gradient (the hook leaves it alone), and those
  steps re-mask weights and state afterwards. Masking before accumulating would let RigL see only
  the last batch at inactive positions while just-dropped weights keep the full sum.
* Accumulation sums the dense gradients of exactly the g steps before the next *allowed* update
  (nothing from before ``start_step`` or from steps whose update is past the end).
* Momentum (SNFS growth, redistribution) is an EMA of dense gradients, updated every step.
* Under DistributedDataParallel the hooks are off (DDP writes the averaged gradient after them)
  and every step re-masks instead. The engine reads gradients in ``step()``, after
  ``optimizer.step()``, so accumulated gradients and momentum are built from DDP's averaged
  gradients and are the same on every rank without a collective of their own.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

import torch

from .distributed import is_distributed
from .masked_store import MaskedStore
from .store import LayerStore
from .timing import UpdateSchedule

log = logging.getLogger("sparsetime")
#: optimizers whose update maps (weight 0, gradient 0, state 0) to 0: with gradients masked they
#: never write to inactive positions, so the per-step re-mask of weights and state can be skipped
ZERO_PRESERVING_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)


class GradientMachinery:
    """What the engine keeps of gradients between optimizer steps."""

    def __init__(self, stores: Mapping[str, LayerStore], optimizer: torch.optim.Optimizer,
                 schedule: UpdateSchedule, needs_grad: bool, needs_momentum: bool, grad_accumulation: int,
                 momentum_beta: float, grad_masking: bool | None) -> None:
        self.schedule = schedule
        self.needs_grad, self.needs_momentum = needs_grad, needs_momentum
        self.accumulation, self.beta = grad_accumulation, momentum_beta
        self.masked = {n: s for n, s in stores.items() if isinstance(s, MaskedStore)}
        self.sparse = [s for s in stores.values() if not isinstance(s, MaskedStore)]
        self.momentum: dict[str, torch.Tensor] = (
            {n: torch.zeros_like(s.param) for n, s in self.masked.items()} if needs_momentum else {})
        self.grad_sum: dict[str, torch.Tensor] = {}
        if grad_masking is None:
            grad_masking = (type(optimizer) in ZERO_PRESERVING_OPTIMIZERS and not needs_momentum
                            and not is_distributed())
        self.grad_masking = bool(grad_masking)
        self._keep_dense = False
        self._hooks = [s.param.register_post_accumulate_grad_hook(self._hook(s))
                       for s in self.masked.values()] if self.grad_masking else []

    def _hook(self, store: MaskedStore):
        def hook(param: torch.Tensor) -> None:
            if not self._keep_dense:
                store.mask_grad()
        return hook

    def dense_gradient_wanted(self, step: int) -> bool:
        """Whether the backward of optimizer step ``step`` must keep its dense gradient."""
        schedule = self.schedule
        if schedule.is_update_step(step):
            return True
        if not self.needs_grad or self.accumulation == 1:
            return False
        upcoming = schedule.next_update_step(step)
        return upcoming is not None and upcoming - step < self.accumulation

    def prepare(self, next_step: int) -> None:
        """Set up the backward of optimizer step ``next_step`` (call after every step and load)."""
        self._keep_dense = self.dense_gradient_wanted(next_step)
        if self.sparse and self.needs_grad:
            capture = self.schedule.is_update_step(next_step)
            for store in self.sparse:
                store.keep_dense_gradient(capture)

    def needs_remask(self) -> bool:
        """Whether weights and state must be re-masked after this step's optimizer step."""
        return not self.grad_masking or self._keep_dense

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        """Book this step's gradients: momentum EMA and the accumulation window."""
        if self.needs_momentum:
            for n, s in self.masked.items():
                if s.param.grad is not None:
                    self.momentum[n].lerp_(s.param.grad, 1.0 - self.beta)
        if self.needs_grad and self.accumulation > 1:
            upcoming = self.schedule.next_update_step(step)
            if upcoming is None or upcoming - step >= self.accumulation:
                return
            for n, s in self.masked.items():
                grad = s.param.grad
                if grad is None:
                    continue
                if n in self.grad_sum:
                    self.grad_sum[n].add_(grad)
                else:
                    self.grad_sum[n] = grad.detach().clone()

    def growth_gradient(self, name: str, step: int) -> torch.Tensor:
        """The dense gradient growth scores read: the mean of the accumulated window, or this step's."""
        if name in self.grad_sum:
            return self.grad_sum[name] / self.accumulation
        p = self.masked[name].param
        if p.grad is not None:
            return p.grad
        log.warning("layer %s has no gradient at step %d; its gradient growth scores are 0", name, step)
        return torch.zeros_like(p)

    def clear(self) -> None:
        """Forget the accumulated gradients (after an update)."""
        self.grad_sum.clear()

    def remove_hooks(self) -> None:
        """Detach the hooks; every later step re-masks weights and state instead."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self.grad_masking = False

    def state_dict(self) -> dict:
        return {"momentum": {n: t.cpu().clone() for n, t in self.momentum.items()},
                "grad_sum": {n: t.cpu().clone() for n, t in self.grad_sum.items()}}

    def load_state_dict(self, momentum: Mapping[str, torch.Tensor], grad_sum: Mapping[str, torch.Tensor]) -> None:
        for n in self.momentum:
            if n in momentum:
                self.momentum[n] = momentum[n].to(self.masked[n].param.device)
        self.grad_sum = {n: t.to(self.masked[n].param.device) for n, t in grad_sum.items() if n in self.masked}
