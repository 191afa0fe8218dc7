"""Gradual magnitude pruning (Zhu & Gupta 2017).

Sparsity follows s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (n ΔT))^3 at the pruning steps
t ∈ {t_0, t_0 + ΔT, ..., t_0 + n ΔT = end_step}, constant in between; density is 1 - s. At each
pruning step the smallest-magnitude active weights are removed (masks only shrink: inactive
weights score -inf). Every ``step()`` re-zeroes pruned weights and their optimizer state, so
momentum and weight decay never revive them.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..core.distributed import broadcast_generator_, check_same_topology, is_distributed
from ._common import Masks, check_density, check_int, check_scope, make_generator, parameters_by_name, selected_names
from .masking import apply_masks, full_masks, mask_density, masked_scores, masks_from_scores

logger = logging.getLogger(__name__)


def check_gmp_schedule(initial_density: float, final_density: float, start_step: int, end_step: int,
                       frequency: int, total_steps: int | None = None) -> None:
    """ValueError unless the schedule reaches ``final_density`` exactly at ``end_step``."""
    initial = check_density(initial_density, "initial_density")
    final = check_density(final_density, "final_density")
    check_int(start_step, "start_step", minimum=0)
    check_int(end_step, "end_step", minimum=0)
    check_int(frequency, "frequency", minimum=1)
    if final > initial:
        raise ValueError(f"final_density {final_density!r} is above initial_density {initial_density!r}; "
                         "gradual pruning only removes weights")
    if end_step <= start_step:
        raise ValueError(f"end_step ({end_step}) must be after start_step ({start_step})")
    if (end_step - start_step) % frequency:
        raise ValueError(
            f"final_density {final_density!r} is unreachable: end_step - start_step = {end_step - start_step} "
            f"is not a multiple of frequency {frequency}, so no pruning step falls on end_step {end_step}"
        )
    if total_steps is not None and end_step > check_int(total_steps, "total_steps", minimum=1):
        raise ValueError(f"final_density {final_density!r} is unreachable: end_step {end_step} is beyond "
                         f"training (total_steps {total_steps})")


def gmp_density(step: int, initial_density: float, final_density: float, start_step: int, end_step: int,
                frequency: int) -> float:
    """Target density at ``step``: the cubic schedule's value at the last pruning step <= ``step``."""
    check_gmp_schedule(initial_density, final_density, start_step, end_step, frequency)
    check_int(step, "step")
    if step < start_step:
        return float(initial_density)
    if step >= end_step:
        return float(final_density)
    last = start_step + ((step - start_step) // frequency) * frequency
    s_i, s_f = 1.0 - initial_density, 1.0 - final_density
    s = s_f + (s_i - s_f) * (1.0 - (last - start_step) / (end_step - start_step)) ** 3
    return 1.0 - s


class GradualMagnitudePruner:
    """Optimizer-like gradual magnitude pruning; call ``step()`` right after ``optimizer.step()``.

    The internal counter counts completed optimizer steps: the k-th call to ``step()`` is step k.
    At pruning steps (``start_step + j * frequency <= end_step``) the masks shrink to exactly
    ``round(gmp_density(k) * N)`` weights (over the masked set for ``scope="global"``, per layer for
    ``"layer"``); at every step pruned weights and optimizer state are zeroed.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None, final_density: float,
                 start_step: int, end_step: int, frequency: int, *, initial_density: float = 1.0,
                 scope: str = "global", dense_layers: Sequence[str] | None = None, dense_first: bool = False,
                 dense_last: bool = False, extra_layers: Sequence[str] | None = None,
                 total_steps: int | None = None, seed: int = 0, allow_collapse: bool = False) -> None:
        check_gmp_schedule(initial_density, final_density, start_step, end_step, frequency, total_steps)
        self.scope = check_scope(scope)
        names = selected_names(model, dense_layers, dense_first, dense_last, extra_layers)
        self.model, self.optimizer = model, optimizer
        self.params = dict(zip(names, parameters_by_name(model, names)))
        self.schedule = {"initial_density": float(initial_density), "final_density": float(final_density),
                         "start_step": int(start_step), "end_step": int(end_step), "frequency": int(frequency)}
        self.allow_collapse = bool(allow_collapse)
        if not allow_collapse:
            sizes = [p.numel() for p in self.params.values()]
            counts = [round(final_density * n) for n in sizes] if scope == "layer" else [round(final_density * sum(sizes))]
            if min(counts) == 0:
                raise ValueError(f"final_density {final_density!r} is unreachable with exact counts: it keeps 0 "
                                 f"weights ({scope} scope); raise it or pass allow_collapse=True")
        self.generator = make_generator(seed=seed)
        broadcast_generator_(self.generator)  # the same tie-breaks on every rank of a distributed run
        self.step_count = 0
        self._masks: Masks = full_masks(self.params)

    @property
    def masks(self) -> Masks:
        """Current masks {parameter name: bool tensor} (live tensors; do not modify)."""
        return self._masks

    @property
    def density(self) -> float:
        """Realised density of the current masks."""
        return mask_density(self._masks)

    def target_density(self, step: int | None = None) -> float:
        """Scheduled density at ``step`` (default: the current step)."""
        return gmp_density(self.step_count if step is None else step, **self.schedule)

    def is_pruning_step(self, step: int) -> bool:
        """True when ``step`` is one of t_0, t_0 + ΔT, ..., end_step."""
        s = self.schedule
        return s["start_step"] <= step <= s["end_step"] and (step - s["start_step"]) % s["frequency"] == 0

    @torch.no_grad()
    def step(self) -> None:
        """Advance one optimizer step: prune if it is a pruning step, then zero pruned weights and state."""
        self.step_count += 1
        if self.is_pruning_step(self.step_count):
            target = self.target_density()
            raw = {n: p.detach().abs() for n, p in self.params.items()}
            new = masks_from_scores(masked_scores(raw, self._masks), target, scope=self.scope,
                                    generator=self.generator, allow_collapse=self.allow_collapse)
            self._masks = {n: m.to(self.params[n].device) for n, m in new.items()}
            if is_distributed():  # DDP keeps the weights equal, so must the masks be: checked, not assumed
                check_same_topology({n: m.reshape(-1).nonzero().squeeze(1) for n, m in self._masks.items()},
                                    self.step_count)
            logger.debug("gmp step %d: density %.4f (target %.4f)", self.step_count, self.density, target)
        apply_masks(self.model, self._masks, self.optimizer)

    def state_dict(self) -> dict[str, Any]:
        """Step counter, masks, schedule and tie-break generator state (tensors and plain values only)."""
        return {"step_count": self.step_count, "scope": self.scope, "schedule": dict(self.schedule),
                "masks": {n: m.detach().cpu().clone() for n, m in self._masks.items()},
                "generator_state": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`; masks are checked against the model and applied."""
        missing = {"step_count", "scope", "schedule", "masks", "generator_state"} - set(state)
        if missing:
            raise ValueError(f"GradualMagnitudePruner state is missing keys {sorted(missing)}")
        if state["schedule"] != self.schedule or state["scope"] != self.scope:
            raise ValueError(f"saved schedule {state['schedule']} / scope {state['scope']!r} differs from this "
                             f"pruner's {self.schedule} / {self.scope!r}")
        masks = state["masks"]
        if set(masks) != set(self.params):
            raise ValueError(f"saved masks name {sorted(masks)}, this pruner masks {sorted(self.params)}")
        for n, m in masks.items():
            if not isinstance(m, torch.Tensor) or m.dtype != torch.bool or m.shape != self.params[n].shape:
                raise ValueError(f"saved mask {n!r} is not a bool tensor of shape {tuple(self.params[n].shape)}")
        self.step_count = check_int(state["step_count"], "step_count", minimum=0)
        self.generator.set_state(state["generator_state"])
        self._masks = {n: masks[n].to(self.params[n].device).clone() for n in self.params}
        with torch.no_grad():
            apply_masks(self.model, self._masks, self.optimizer)
