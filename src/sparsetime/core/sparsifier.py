"""`DynamicSparsity`: turn any model + optimizer into a dynamic-sparse-training run.

Optimizer-like (cf. ``torch.ao.pruning``): call :meth:`DynamicSparsity.step` after every
``optimizer.step()``. It re-applies the masks to weights and optimizer state (SPEC §3) and, every
``update_interval`` steps, drops and regrows connections with the registered criteria (SPEC §4),
while :class:`~sparsetime.core.exploration.ExplorationTracker` books Rs and lifetimes (SPEC §5).
All randomness comes from the sparsifier's own seeded generator, never the global RNG.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from . import criteria, schedules
from .distributions import DISTRIBUTIONS, active_count, check_density, compute_densities
from .exploration import ExplorationTracker
from .masks import check_mask, random_mask, sparse_init_
from .selection import select_sparse_parameters
from .storage import MaskedStorage
from .topology import allocate, drop_count, select_drop, select_grow

log = logging.getLogger("sparsetime")
EXECUTION_MODES = ("masked",)
#: optimizers whose update maps (weight 0, gradient 0, state 0) to 0: with gradients masked they
#: never write to inactive positions, so the per-step re-mask of weights and state can be skipped
ZERO_PRESERVING_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)
STATE_VERSION = 1


class DynamicSparsity:
    """Dynamic sparse training (SET / RigL / SNFS / ITOP) over a model's Linear and Conv weights.

    Args:
        model: the network; its Linear/ConvNd weights form the masked set (see ``dense_layers``).
        optimizer: the optimizer that updates the model (must hold every masked parameter).
        density: target fraction of active weights over the masked set, in (0, 1].
        distribution: "uniform", "er", "erk" or {name pattern: density} (others share the rest).
        growth: registered growth criterion ("random", "gradient", "momentum", "unexplored").
        drop: registered drop criterion ("magnitude", "negativity", "random").
        drop_fraction: alpha, the fraction of each layer's active weights replaced per update.
        drop_schedule: "constant", "cosine" or "linear" decay of the drop fraction.
        min_drop_fraction: the schedule's floor f_min (ITOP uses 0.005, RigL 0).
        update_interval: steps between topology updates (Delta T); None = static sparse training.
        total_steps: total optimizer steps T (needed by decaying schedules and ``stop_fraction``).
        start_step / stop_fraction: updates happen at t % Delta T == 0, start < t <= T * stop.
        dense_layers / dense_first / dense_last / extra_layers: which weights are sparse.
        erk_power: exponent of the ERK score.
        sparse_init: rescale surviving weights per unit (SPEC §1); default on for sampled masks,
            off when ``initial_masks`` are given (their weights usually come from pruning).
        regrow_dropped: whether just-dropped positions may be regrown in the same update.
        redistribution: move regrowth budget across layers by mean |momentum| (SNFS).
        grad_accumulation: average the dense gradient of the last g steps for gradient growth.
        momentum_beta: EMA coefficient of dense gradients for momentum growth / redistribution.
        seed: seed of the sparsifier's generator (masks, tie-breaks, random growth).
        initial_masks: {name: bool mask} to start from (e.g. from pruning); defines the density.
        execution: storage of the sparse weights; "masked" (dense tensor + mask).
        grad_masking: zero inactive gradients in a post-accumulate-grad hook (one pass over the
            gradient) instead of re-masking weights and every optimizer state after each step.
            None (default) turns it on for SGD/Adam/AdamW when no dense gradient is needed every
            step (not momentum growth / redistribution) and no multi-process group is running.
            Update steps always keep the dense gradient and re-mask everything. Gradients must
            come from ``backward()`` for the hook to run; else pass ``grad_masking=False``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        density: float | None = None,
        distribution: str | Mapping[str, float] = "erk",
        growth: str = "random",
        drop: str = "magnitude",
        drop_fraction: float = 0.5,
        drop_schedule: str = "cosine",
        min_drop_fraction: float = 0.0,
        update_interval: int | None = 100,
        total_steps: int | None = None,
        start_step: int = 0,
        stop_fraction: float = 1.0,
        dense_layers: Sequence[str] | None = None,
        dense_first: bool = False,
        dense_last: bool = False,
        extra_layers: Sequence[str] | None = None,
        erk_power: float = 1.0,
        sparse_init: bool | None = None,
        regrow_dropped: bool = True,
        redistribution: bool = False,
        grad_accumulation: int = 1,
        momentum_beta: float = 0.9,
        seed: int = 0,
        initial_masks: Mapping[str, torch.Tensor] | None = None,
        execution: str = "masked",
        grad_masking: bool | None = None,
    ) -> None:
        # ---- validate everything before touching the model (nothing half-initialised) ----
        if initial_masks is None:
            if density is None:
                raise ValueError("density is required (a number in (0, 1]) unless initial_masks are given")
            density = check_density(density)
        elif density is not None:
            density = check_density(density)
        if not isinstance(distribution, Mapping) and (
                not isinstance(distribution, str) or distribution.lower() not in DISTRIBUTIONS):
            raise ValueError(f"unknown distribution {distribution!r}; allowed: {', '.join(DISTRIBUTIONS)} "
                             "or a mapping {name pattern: density}")
        self.growth_fn = criteria.get_growth(growth)
        self.drop_fn = criteria.get_drop(drop)
        self.schedule_fn = schedules.get_schedule(drop_schedule)
        if execution not in EXECUTION_MODES:
            raise ValueError(f"unknown execution {execution!r}; allowed: {', '.join(EXECUTION_MODES)}")
        for label, value in (("drop_fraction", drop_fraction), ("min_drop_fraction", min_drop_fraction)):
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{label} must be in [0, 1], got {value!r}")
        if min_drop_fraction > drop_fraction:
            raise ValueError(f"min_drop_fraction ({min_drop_fraction}) must not exceed drop_fraction ({drop_fraction})")
        if update_interval is not None and (isinstance(update_interval, bool) or not isinstance(update_interval, int)
                                            or update_interval < 1):
            raise ValueError(f"update_interval must be a positive int or None (static sparsity), got {update_interval!r}")
        if total_steps is not None and (not isinstance(total_steps, int) or total_steps < 1):
            raise ValueError(f"total_steps must be a positive int or None, got {total_steps!r}")
        if not isinstance(stop_fraction, (int, float)) or not 0.0 < stop_fraction <= 1.0:
            raise ValueError(f"stop_fraction must be in (0, 1], got {stop_fraction!r}")
        if update_interval is not None and total_steps is None and (drop_schedule != "constant" or stop_fraction < 1.0):
            raise ValueError(f"total_steps is required with drop_schedule={drop_schedule!r} / stop_fraction="
                             f"{stop_fraction}; pass total_steps=<number of optimizer steps>")
        if not isinstance(grad_accumulation, int) or grad_accumulation < 1:
            raise ValueError(f"grad_accumulation must be an int >= 1, got {grad_accumulation!r}")
        if not 0.0 <= momentum_beta < 1.0:
            raise ValueError(f"momentum_beta must be in [0, 1), got {momentum_beta!r}")
        params = select_sparse_parameters(model, dense_layers, dense_first, dense_last, extra_layers)
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        missing = [n for n, p in params.items() if id(p) not in held]
        if missing:
            raise ValueError(f"the optimizer does not hold these sparse parameters of the model: {', '.join(missing)}; "
                             "build the optimizer from model.parameters() before the sparsifier")
        generator = torch.Generator().manual_seed(int(seed))
        if initial_masks is not None:
            masks = self._check_initial_masks(params, initial_masks)
            densities = {n: m.sum().item() / m.numel() for n, m in masks.items()}
        else:
            shapes = {n: tuple(p.shape) for n, p in params.items()}
            densities = compute_densities(shapes, density, distribution, erk_power)
            masks = {n: random_mask(tuple(p.shape), active_count(densities[n], p.numel()), generator, p.device)
                     for n, p in params.items()}

        # ---- commit ----
        self.model, self.optimizer = model, optimizer
        self.params = params
        self.target_density = density
        self.distribution = distribution
        self.growth, self.drop = growth, drop
        self.drop_fraction, self.min_drop_fraction = float(drop_fraction), float(min_drop_fraction)
        self.drop_schedule = drop_schedule
        self.update_interval, self.total_steps = update_interval, total_steps
        self.start_step, self.stop_fraction = int(start_step), float(stop_fraction)
        self.regrow_dropped, self.redistribution = bool(regrow_dropped), bool(redistribution)
        self.grad_accumulation, self.momentum_beta = grad_accumulation, float(momentum_beta)
        self.seed, self.execution = int(seed), execution
        self.generator = generator
        self.layer_target_densities = densities
        self._step = 0
        self.update_history: list[dict] = []
        self.storage = MaskedStorage(params, masks, optimizer)
        self.counts = {n: int(m.sum()) for n, m in masks.items()}
        self.tracker = ExplorationTracker(self.storage.masks)
        self._needs_grad = growth in criteria.NEEDS_GRAD
        self._needs_momentum = growth in criteria.NEEDS_MOMENTUM or self.redistribution
        self._momentum = {n: torch.zeros_like(p) for n, p in params.items()} if self._needs_momentum else {}
        self._grad_sum: dict[str, torch.Tensor] = {}
        if sparse_init is None:
            sparse_init = initial_masks is None
        self.sparse_init = bool(sparse_init)
        if self.sparse_init:
            for n, p in params.items():
                sparse_init_(p.data, self.storage.masks[n])
        self.storage.apply()
        if grad_masking is None:
            grad_masking = (type(optimizer) in ZERO_PRESERVING_OPTIMIZERS and not self._needs_momentum
                            and not _multi_process())
        self.grad_masking = bool(grad_masking)
        self._hooks = [p.register_post_accumulate_grad_hook(self._make_grad_hook(n))
                       for n, p in params.items()] if self.grad_masking else []
        log.info("sparsetime: %d sparse layers, realised density %.5f (target %s)\n%s",
                 len(params), self.density(), density, self.format_layer_table())

    # ------------------------------------------------------------------ public API
    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """{fully qualified parameter name: bool mask} (live; do not modify in place)."""
        return self.storage.masks

    @property
    def fired_masks(self) -> dict[str, torch.Tensor]:
        return self.tracker.fired

    @property
    def step_count(self) -> int:
        return self._step

    def density(self) -> float:
        """Realised density over the masked set."""
        return sum(self.counts.values()) / sum(p.numel() for p in self.params.values())

    def exploration_rate(self) -> float:
        """The ITOP rate Rs = sum |F_l| / sum N_l over the masked set."""
        return self.tracker.rate()

    def layer_exploration_rates(self) -> dict[str, float]:
        return {n: self.tracker.layer_rate(n) for n in self.params}

    def exploration_stats(self) -> dict:
        """Rs, survival to the next update, reliably-explored fraction, lifetime histogram."""
        return self.tracker.stats()

    def drop_fraction_at(self, step: int) -> float:
        end = self._end_step()
        return self.schedule_fn(step, self.drop_fraction, self.min_drop_fraction, end if end else 1.0)

    def is_update_step(self, step: int) -> bool:
        if self.update_interval is None or step % self.update_interval != 0 or step <= self.start_step:
            return False
        end = self._end_step()
        return end is None or step <= end

    def layer_report(self) -> list[dict]:
        """Per layer: name, shape, size, density, active count, target density, Rs."""
        return [{
            "name": n,
            "shape": tuple(p.shape),
            "size": p.numel(),
            "active": self.counts[n],
            "density": self.counts[n] / p.numel(),
            "target_density": self.layer_target_densities[n],
            "itop_rate": self.tracker.layer_rate(n),
        } for n, p in self.params.items()]

    def format_layer_table(self) -> str:
        rows = [f"{'layer':<32} {'shape':<20} {'N_l':>10} {'d_l':>8} {'n_l':>10} {'Rs':>7}"]
        for r in self.layer_report():
            rows.append(f"{r['name']:<32} {str(r['shape']):<20} {r['size']:>10} {r['density']:>8.4f} "
                        f"{r['active']:>10} {r['itop_rate']:>7.4f}")
        return "\n".join(rows)

    @torch.no_grad()
    def step(self) -> dict | None:
        """Call after ``optimizer.step()``: re-mask, book the step, maybe update the topology.

        Returns the update's statistics on update steps, else None.
        """
        self._step += 1
        t = self._step
        update = self.is_update_step(t)
        if not self.grad_masking or update:
            self.storage.apply()
        if self._needs_momentum:
            for n, p in self.params.items():
                if p.grad is not None:
                    self._momentum[n].lerp_(p.grad, 1.0 - self.momentum_beta)
        if self._needs_grad and self.grad_accumulation > 1 and self.update_interval is not None:
            self._accumulate_grad(t)
        if not update:
            return None
        return self.update_topology()

    def remove_hooks(self) -> None:
        """Detach the gradient hooks (e.g. before training the model densely again)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self.grad_masking = False

    @torch.no_grad()
    def update_topology(self) -> dict:
        """Drop and regrow every layer now (SPEC §4); returns this update's statistics."""
        t = self._step
        fraction = self.drop_fraction_at(t)
        plans = {}
        for n, p in self.params.items():
            n_active, size = self.counts[n], p.numel()
            if n_active in (0, size):
                continue
            k = drop_count(fraction, n_active)
            if not self.regrow_dropped:
                k = min(k, size - n_active)
            if k == 0:
                continue
            mask = self.storage.mask(n)
            view = self._view(n)
            active_idx = mask.reshape(-1).nonzero().squeeze(1)
            dropped = select_drop(active_idx, self.drop_fn(view), k, self.generator)
            plans[n] = (view, dropped)
        grow_counts = self._grow_counts(plans)
        stats = {"step": t, "drop_fraction": fraction, "dropped": 0, "grown": 0, "changed": 0, "removed": 0}
        for n, (view, dropped) in plans.items():
            old = self.storage.mask(n)
            after_drop = old.clone().reshape(-1)
            after_drop[dropped] = False
            candidates = (~after_drop if self.regrow_dropped else ~old.reshape(-1)).nonzero().squeeze(1)
            grown = select_grow(candidates, self.growth_fn(view), grow_counts[n], self.generator)
            new = after_drop
            new[grown] = True
            new = new.reshape(old.shape)
            self.tracker.record(n, t, self.params[n], dropped, grown, new, old)
            self.storage.set_mask(n, new)
            self.storage.zero_positions(n, grown)
            changed = int((new & ~old).sum())
            old_count = self.counts[n]
            self.counts[n] += grown.numel() - dropped.numel()
            stats["dropped"] += dropped.numel()
            stats["grown"] += grown.numel()
            stats["changed"] += changed
            stats["removed"] += old_count - (self.counts[n] - changed)
        self.tracker.finish_update(t)
        self.storage.apply()
        self._grad_sum.clear()
        active = sum(self.counts.values())
        total = sum(p.numel() for p in self.params.values())
        stats.update({
            "replaced_fraction": stats["changed"] / active if active else 0.0,
            "hamming": (stats["changed"] + stats["removed"]) / total,
            "itop_rate": self.tracker.rate(),
            "density": active / total,
        })
        self.update_history.append(stats)
        log.info("step %d: topology update, drop fraction %.4f, replaced %.4f of active, Rs %.4f",
                 t, fraction, stats["replaced_fraction"], stats["itop_rate"])
        return stats

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict:
        """Everything needed to continue bit-for-bit: masks, fired masks, lifetimes, step, RNG."""
        return {
            "version": STATE_VERSION,
            "step": self._step,
            "names": list(self.params),
            "shapes": {n: list(p.shape) for n, p in self.params.items()},
            "masks": {n: m.cpu().clone() for n, m in self.storage.masks.items()},
            "exploration": self.tracker.state_dict(),
            "generator": self.generator.get_state(),
            "momentum": {n: t.cpu().clone() for n, t in self._momentum.items()},
            "grad_sum": {n: t.cpu().clone() for n, t in self._grad_sum.items()},
            "history": list(self.update_history),
            "layer_target_densities": dict(self.layer_target_densities),
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Restore from :meth:`state_dict`; names and shapes must match this sparsifier's layers."""
        if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
            raise ValueError(f"not a sparsetime DynamicSparsity state (expected version {STATE_VERSION})")
        mine, theirs = set(self.params), set(state["masks"])
        if mine != theirs:
            raise ValueError(f"checkpoint masks do not match the model's sparse layers: missing "
                             f"{sorted(mine - theirs)}, unexpected {sorted(theirs - mine)}")
        masks = {n: check_mask(n, state["masks"][n], self.params[n].shape) for n in self.params}
        for n, m in masks.items():
            self.storage.set_mask(n, m)
            self.counts[n] = int(m.sum())
        self.tracker.load_state_dict(state["exploration"])
        self.generator.set_state(state["generator"])
        self._step = int(state["step"])
        for n in self._momentum:
            if n in state["momentum"]:
                self._momentum[n] = state["momentum"][n].to(self.params[n].device)
        self._grad_sum = {n: t.to(self.params[n].device) for n, t in state["grad_sum"].items()}
        self.update_history = list(state["history"])
        self.layer_target_densities = dict(state["layer_target_densities"])
        self.storage.apply()

    # ------------------------------------------------------------------ internals
    def _make_grad_hook(self, name: str):
        def hook(param: torch.Tensor) -> None:
            # the step that follows this backward keeps its dense gradient if it updates the topology
            if not self.is_update_step(self._step + 1):
                self.storage.mask_grad(name)
        return hook

    def _end_step(self) -> float | None:
        if self.total_steps is None:
            return None
        return self.total_steps * self.stop_fraction

    def _view(self, name: str) -> criteria.LayerView:
        p = self.params[name]
        grad = None
        if self._needs_grad:
            if name in self._grad_sum:
                grad = self._grad_sum[name] / self.grad_accumulation
            elif p.grad is not None:
                grad = p.grad
            else:
                log.warning("layer %s has no gradient at step %d; its gradient growth scores are 0", name, self._step)
                grad = torch.zeros_like(p)
        return criteria.LayerView(name=name, weight=p.detach(), mask=self.storage.mask(name),
                                  fired=self.tracker.fired[name], generator=self.generator,
                                  grad=grad, momentum=self._momentum.get(name))

    def _grow_counts(self, plans: dict) -> dict[str, int]:
        if not self.redistribution or not plans:
            return {n: d.numel() for n, (_, d) in plans.items()}
        names = list(plans)
        weights = []
        for n in names:
            mask = self.storage.mask(n)
            active = max(self.counts[n], 1)
            weights.append(float((self._momentum[n].abs() * mask).sum()) / active)
        caps = []
        for n in names:
            size, dropped = self.params[n].numel(), plans[n][1].numel()
            caps.append(size - (self.counts[n] - dropped) if self.regrow_dropped else size - self.counts[n])
        total = sum(plans[n][1].numel() for n in names)
        return dict(zip(names, allocate(total, weights, caps)))

    def _accumulate_grad(self, t: int) -> None:
        interval = self.update_interval
        next_update = math.ceil(t / interval) * interval
        if next_update - t >= self.grad_accumulation:
            return
        for n, p in self.params.items():
            if p.grad is None:
                continue
            if n in self._grad_sum:
                self._grad_sum[n].add_(p.grad)
            else:
                self._grad_sum[n] = p.grad.detach().clone()

    @staticmethod
    def _check_initial_masks(params: Mapping[str, nn.Parameter], initial: Mapping[str, torch.Tensor]) -> dict:
        mine, theirs = set(params), set(initial)
        if mine != theirs:
            raise ValueError(f"initial_masks must have one mask per sparse layer: missing {sorted(mine - theirs)}, "
                             f"unexpected {sorted(theirs - mine)}")
        return {n: check_mask(n, initial[n], params[n].shape).to(params[n].device) for n in params}


def _multi_process() -> bool:
    """True inside an initialised process group of more than one rank (DDP may rewrite grads)."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
