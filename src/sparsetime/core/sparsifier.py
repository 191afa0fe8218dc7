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
import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from . import criteria, schedules
from .distributions import DISTRIBUTIONS, active_count, check_density, compute_densities
from .exploration import ExplorationTracker
from .index_sets import complement_sorted, isin_sorted, mask_from_indices
from .masks import check_mask, random_mask, sparse_init_
from .selection import select_sparse_parameters
from .storage import MaskedStorage
from .topk import select_topk
from .topology import allocate, drop_count, select_grow

log = logging.getLogger("sparsetime")
EXECUTION_MODES = ("masked", "sparse", "auto")
#: optimizers whose update maps (weight 0, gradient 0, state 0) to 0: with gradients masked they
#: never write to inactive positions, so the per-step re-mask of weights and state can be skipped
ZERO_PRESERVING_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)
STATE_VERSION = 2
READABLE_STATE_VERSIONS = (1, 2)


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
        execution: how the sparse layers run. "masked": dense tensor times a bool mask (any layer,
            any device). "sparse": every nn.Linear / nn.Conv2d of the masked set is replaced, in
            place in ``model``, by a sparse module (values + int32 CSR indices, sparse kernels),
            so weights, gradients and optimizer state are O(nnz) and the optimizer is moved onto
            the modules' ``weight_values``; layers without sparse kernels, and all layers on
            CUDA, stay masked with a warning. "auto": sparse only where the kernels are faster
            (large layers at density <= ~0.15, see :func:`sparsetime.kernels.prefer_sparse`).
            Sparse execution supports the growth criteria with an index sampler (random,
            unexplored) and gradient (with grad_accumulation 1), without redistribution. Sparse
            modules already in ``model`` (e.g. a 1M-neuron MLP of SparseLinear layers, which has
            no dense form) always run sparse and keep their pattern; ``density`` then applies to
            the model's dense Linear/Conv layers only and may be None when there are none.
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
        if density is not None:  # required below when there are dense layers to sample masks for
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
        prebuilt = _sparse_modules(model)
        params = _select_dense(model, prebuilt, dense_layers, dense_first, dense_last, extra_layers)
        if initial_masks is None and density is None and params:
            raise ValueError("density is required (a number in (0, 1]) unless initial_masks are given")
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        missing = [n for n, p in params.items() if id(p) not in held]
        missing += [n for n, m in prebuilt.items() if id(m.weight_values) not in held]
        if missing:
            raise ValueError(f"the optimizer does not hold these sparse parameters of the model: {', '.join(missing)}; "
                             "build the optimizer from model.parameters() before the sparsifier")
        generator = torch.Generator().manual_seed(int(seed))
        if initial_masks is not None:
            masks = self._check_initial_masks(params, initial_masks)
            densities = {n: m.sum().item() / m.numel() for n, m in masks.items()}
        elif params:
            shapes = {n: tuple(p.shape) for n, p in params.items()}
            densities = compute_densities(shapes, density, distribution, erk_power)
            masks = {n: random_mask(tuple(p.shape), active_count(densities[n], p.numel()), generator, p.device)
                     for n, p in params.items()}
        else:
            masks, densities = {}, {}
        to_convert = _plan_execution(model, params, densities, execution, growth, redistribution,
                                     grad_accumulation, prebuilt)
        order = {f"{m}.weight" if m else "weight": i for i, (m, _) in enumerate(model.named_modules())}

        # ---- commit ----
        self.model, self.optimizer = model, optimizer
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
        self.layer_target_densities = {**densities, **{n: m.density for n, m in prebuilt.items()}}
        self._step = 0
        self.update_history: list[dict] = []
        if sparse_init is None:
            sparse_init = initial_masks is None
        self.sparse_init = bool(sparse_init)
        if self.sparse_init:
            for n, p in params.items():
                sparse_init_(p.data, masks[n])
        sparse_layers = dict(prebuilt)
        if to_convert:
            from ..nn.storage import convert_to_sparse
            sparse_layers.update(convert_to_sparse(model, optimizer, {n: masks[n] for n in to_convert}))
        #: names of every sparse layer (weights named as in the dense model, e.g. "fc1.weight"), model order
        self.layer_names = sorted([*params, *prebuilt], key=lambda n: order.get(n, len(order)))
        #: dense parameters of the layers executed masked
        self.params = {n: p for n, p in params.items() if n not in sparse_layers}
        self.shapes = {n: tuple(p.shape) for n, p in params.items()}
        self.shapes.update({n: tuple(m.weight_shape) for n, m in prebuilt.items()})
        self.storage = MaskedStorage(self.params, {n: masks[n] for n in self.params}, optimizer)
        self.sparse_storage = None
        if sparse_layers:
            from ..nn.storage import SparseStorage
            self.sparse_storage = SparseStorage(sparse_layers, optimizer)
        self.counts = {n: int(self.storage.masks[n].sum()) for n in self.params}
        self.counts.update({n: self.sparse_storage.count(n) for n in sparse_layers})
        self.tracker = ExplorationTracker(self.storage.masks, {
            n: (self.sparse_storage.size(n), self.sparse_storage.active(n)) for n in sparse_layers})
        self._needs_grad = growth in criteria.NEEDS_GRAD
        self._needs_momentum = growth in criteria.NEEDS_MOMENTUM or self.redistribution
        self._momentum = {n: torch.zeros_like(p) for n, p in self.params.items()} if self._needs_momentum else {}
        self._grad_sum: dict[str, torch.Tensor] = {}
        self.storage.apply()
        if grad_masking is None:
            grad_masking = (type(optimizer) in ZERO_PRESERVING_OPTIMIZERS and not self._needs_momentum
                            and not _multi_process())
        self.grad_masking = bool(grad_masking)
        self._hooks = [p.register_post_accumulate_grad_hook(self._make_grad_hook(n))
                       for n, p in self.params.items()] if self.grad_masking else []
        self._sync_gradient_capture()
        log.info("sparsetime: %d sparse layers (%d executed sparse), realised density %.5f (target %s)\n%s",
                 len(self.layer_names), len(sparse_layers), self.density(), density, self.format_layer_table())

    # ------------------------------------------------------------------ public API
    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """{weight name: bool mask} of every sparse layer. Live for masked layers (do not modify in
        place); materialised on each access for layers executed sparse (O(size) memory)."""
        if self.sparse_storage is None:
            return self.storage.masks
        return {n: self.storage.masks[n] if n in self.storage.masks else self.sparse_storage.dense_mask(n)
                for n in self.layer_names}

    @property
    def fired_masks(self) -> dict[str, torch.Tensor]:
        """{weight name: bool mask of every position ever active} (materialised for sparse layers)."""
        return {n: self.tracker.fired_mask(n, self.shapes[n]) for n in self.layer_names}

    @property
    def layer_execution(self) -> dict[str, str]:
        """{weight name: "masked" or "sparse"}: how each layer runs (see ``execution``)."""
        return {n: "masked" if n in self.params else "sparse" for n in self.layer_names}

    @property
    def step_count(self) -> int:
        return self._step

    def active_indices(self, name: str) -> torch.Tensor:
        """Sorted int64 flat indices of the active weights of layer ``name`` (either execution)."""
        if name in self.params:
            return self.storage.masks[name].reshape(-1).nonzero().squeeze(1)
        return self.sparse_storage.active(name)

    def density(self) -> float:
        """Realised density over the masked set."""
        return sum(self.counts.values()) / sum(self._size(n) for n in self.layer_names)

    def current_densities(self) -> dict[str, float]:
        """{weight name: realised density} of every sparse layer (no dense mask is built)."""
        return {n: self.counts[n] / self._size(n) for n in self.layer_names}

    def exploration_rate(self) -> float:
        """The ITOP rate Rs = sum |F_l| / sum N_l over the masked set."""
        return self.tracker.rate()

    def layer_exploration_rates(self) -> dict[str, float]:
        return {n: self.tracker.layer_rate(n) for n in self.layer_names}

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
        """Per layer: name, shape, size, density, active count, target density, Rs, execution."""
        return [{
            "name": n,
            "shape": self.shapes[n],
            "size": self._size(n),
            "active": self.counts[n],
            "density": self.counts[n] / self._size(n),
            "target_density": self.layer_target_densities[n],
            "itop_rate": self.tracker.layer_rate(n),
            "execution": "masked" if n in self.params else "sparse",
        } for n in self.layer_names]

    def format_layer_table(self) -> str:
        rows = [f"{'layer':<32} {'shape':<20} {'N_l':>10} {'d_l':>8} {'n_l':>10} {'Rs':>7} {'exec':>6}"]
        for r in self.layer_report():
            rows.append(f"{r['name']:<32} {str(r['shape']):<20} {r['size']:>10} {r['density']:>8.4f} "
                        f"{r['active']:>10} {r['itop_rate']:>7.4f} {r['execution']:>6}")
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
        stats = self.update_topology() if update else None
        self._sync_gradient_capture()
        return stats

    def remove_hooks(self) -> None:
        """Detach the gradient hooks (e.g. before training the model densely again)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self.grad_masking = False

    @torch.no_grad()
    def update_topology(self) -> dict:
        """Drop and regrow every layer now (SPEC §4); returns this update's statistics.

        Both execution modes run the same steps on sorted flat indices: drop the k_l active weights
        with the smallest drop score (seeded tie-break), then grow k_l strictly inactive positions,
        all drops before all growths, so equal weights and generator states give equal topologies.
        """
        t = self._step
        fraction = self.drop_fraction_at(t)
        plans = {}
        for n in self.layer_names:
            n_active, size = self.counts[n], self._size(n)
            if n_active in (0, size):
                continue
            k = drop_count(fraction, n_active)
            if not self.regrow_dropped:
                k = min(k, size - n_active)
            if k == 0:
                continue
            active = self.active_indices(n)
            local = select_topk(self._drop_scores(n, active), k, self.generator, largest=False)
            plans[n] = (active, local)
        grow_counts = self._grow_counts(plans)
        stats = {"step": t, "drop_fraction": fraction, "dropped": 0, "grown": 0, "changed": 0, "removed": 0}
        for n, (active, local) in plans.items():
            keep = torch.ones(active.numel(), dtype=torch.bool, device=active.device)
            keep[local] = False
            keep = keep.nonzero().squeeze(1)
            dropped = active[local]
            grown = self._grow(n, active[keep] if self.regrow_dropped else active, grow_counts[n])
            if n in self.params:
                old = self.storage.mask(n)
                new = torch.zeros(old.numel(), dtype=torch.bool, device=old.device)
                new[active[keep]] = True
                new[grown] = True
                new = new.view(old.shape)
                self.tracker.record(n, t, self.params[n], dropped, grown, new, old)
                self.storage.set_mask(n, new)
                self.storage.zero_positions(n, grown)
            else:
                values = self.sparse_storage.values(n)
                src = self.sparse_storage.update(n, keep, grown)
                self.tracker.record_index(n, t, values, active, local, grown, src)
            regrown = int(isin_sorted(dropped, grown).sum())
            changed = grown.numel() - regrown
            self.counts[n] += grown.numel() - dropped.numel()
            stats["dropped"] += dropped.numel()
            stats["grown"] += grown.numel()
            stats["changed"] += changed
            stats["removed"] += dropped.numel() - regrown
        self.tracker.finish_update(t)
        self.storage.apply()
        self._grad_sum.clear()
        active_total = sum(self.counts.values())
        total = sum(self._size(n) for n in self.layer_names)
        stats.update({
            "replaced_fraction": stats["changed"] / active_total if active_total else 0.0,
            "hamming": (stats["changed"] + stats["removed"]) / total,
            "itop_rate": self.tracker.rate(),
            "density": active_total / total,
        })
        self.update_history.append(stats)
        log.info("step %d: topology update, drop fraction %.4f, replaced %.4f of active, Rs %.4f",
                 t, fraction, stats["replaced_fraction"], stats["itop_rate"])
        return stats

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict:
        """Everything needed to continue bit-for-bit: topology, exploration state, step, RNG.

        Masked layers save a bool ``masks`` entry, sparse layers their sorted active flat indices
        (``active``); either loads into either execution mode.
        """
        return {
            "version": STATE_VERSION,
            "step": self._step,
            "names": list(self.layer_names),
            "shapes": {n: list(self.shapes[n]) for n in self.layer_names},
            "masks": {n: m.cpu().clone() for n, m in self.storage.masks.items()},
            "active": {n: self.sparse_storage.active(n).cpu().clone()
                       for n in self.layer_names if n not in self.params},
            "exploration": self.tracker.state_dict(),
            "generator": self.generator.get_state(),
            "momentum": {n: t.cpu().clone() for n, t in self._momentum.items()},
            "grad_sum": {n: t.cpu().clone() for n, t in self._grad_sum.items()},
            "history": list(self.update_history),
            "layer_target_densities": dict(self.layer_target_densities),
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Restore from :meth:`state_dict`; names and shapes must match this sparsifier's layers."""
        if not isinstance(state, Mapping) or state.get("version") not in READABLE_STATE_VERSIONS:
            raise ValueError(f"not a sparsetime DynamicSparsity state (expected version {STATE_VERSION})")
        saved_active = dict(state.get("active", {}))
        mine, theirs = set(self.layer_names), set(state["masks"]) | set(saved_active)
        if mine != theirs:
            raise ValueError(f"checkpoint masks do not match the model's sparse layers: missing "
                             f"{sorted(mine - theirs)}, unexpected {sorted(theirs - mine)}")
        active: dict[str, torch.Tensor] = {}
        for n in self.layer_names:
            if n in state["masks"]:
                mask = check_mask(n, state["masks"][n], self.shapes[n])
                active[n] = mask.reshape(-1).nonzero().squeeze(1)
            else:
                active[n] = _check_active(n, saved_active[n], self._size(n))
        for n in self.layer_names:
            if n in self.params:
                self.storage.set_mask(n, mask_from_indices(active[n], self.shapes[n]))
            else:
                self.sparse_storage.set_active(n, active[n])
            self.counts[n] = active[n].numel()
        self.tracker.load_state_dict(state["exploration"], active)
        self.generator.set_state(state["generator"])
        self._step = int(state["step"])
        for n in self._momentum:
            if n in state["momentum"]:
                self._momentum[n] = state["momentum"][n].to(self.params[n].device)
        self._grad_sum = {n: t.to(self.params[n].device) for n, t in state["grad_sum"].items() if n in self.params}
        self.update_history = list(state["history"])
        self.layer_target_densities = dict(state["layer_target_densities"])
        self.storage.apply()
        self._sync_gradient_capture()

    # ------------------------------------------------------------------ internals
    def _make_grad_hook(self, name: str):
        def hook(param: torch.Tensor) -> None:
            # the step that follows this backward keeps its dense gradient if it updates the topology
            if not self.is_update_step(self._step + 1):
                self.storage.mask_grad(name)
        return hook

    def _size(self, name: str) -> int:
        return math.prod(self.shapes[name])

    def _sync_gradient_capture(self) -> None:
        """Sparse layers keep their input and output gradient only for the backward before an
        update step with gradient growth (what RigL's dense gradient score is computed from)."""
        if self.sparse_storage is not None and self._needs_grad:
            self.sparse_storage.capture_gradients(self.is_update_step(self._step + 1))

    def _drop_scores(self, name: str, active: torch.Tensor) -> torch.Tensor:
        """Drop scores of the active weights of ``name``, aligned with ``active``.

        Sparse layers give the criterion a view of their active entries only: ``weight`` is the
        1-D values, ``mask`` and ``fired`` are all True.
        """
        if name in self.params:
            return self.drop_fn(self._view(name)).reshape(-1)[active]
        values = self.sparse_storage.values(name)
        ones = torch.ones(values.shape, dtype=torch.bool, device=values.device)
        view = criteria.LayerView(name=name, weight=values, mask=ones, fired=ones, generator=self.generator)
        return self.drop_fn(view).reshape(-1)

    def _grow(self, name: str, excluded: torch.Tensor, k: int) -> torch.Tensor:
        """Sorted flat indices of k positions outside ``excluded`` (the growth criterion's pick)."""
        sampler = criteria.GROWTH_SAMPLERS.get(self.growth)
        if sampler is not None:
            return sampler(self._size(name), excluded, lambda: self.tracker.fired_indices(name), k, self.generator)
        if name not in self.params:  # gradient growth of a sparse layer, scored in row blocks
            return self.sparse_storage.gradient_topk(name, k, excluded, self.generator)
        candidates = complement_sorted(excluded, self._size(name))
        return select_grow(candidates, self.growth_fn(self._view(name)), k, self.generator)

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
            size, dropped = self._size(n), plans[n][1].numel()
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


def _sparse_modules(model: nn.Module) -> dict:
    """{weight name: module} of the sparse modules (values + CSR) already in ``model``."""
    from ..nn.base import SparseModule  # the kernels layer; imported only when needed

    return {f"{name}.weight" if name else "weight": m for name, m in model.named_modules()
            if isinstance(m, SparseModule)}


def _select_dense(model: nn.Module, prebuilt: Mapping, dense_layers, dense_first, dense_last,
                  extra_layers) -> dict[str, nn.Parameter]:
    """The dense weights to sparsify; may be empty when the model already has sparse modules."""
    from .selection import candidate_parameters

    if prebuilt and not candidate_parameters(model) and not extra_layers:
        return {}
    try:
        return select_sparse_parameters(model, dense_layers, dense_first, dense_last, extra_layers)
    except ValueError as exc:
        if prebuilt and "nothing is left to sparsify" in str(exc):
            return {}
        raise


def _plan_execution(model: nn.Module, params: Mapping[str, nn.Parameter], densities: Mapping[str, float],
                    execution: str, growth: str, redistribution: bool, grad_accumulation: int,
                    prebuilt: Mapping) -> list[str]:
    """Names of the dense layers to convert to sparse modules (validated, before any change)."""
    blocker = None
    if growth not in criteria.GROWTH_SAMPLERS and growth != "gradient":
        allowed = ", ".join(sorted([*criteria.GROWTH_SAMPLERS, "gradient"]))
        blocker = f"growth={growth!r} (it scores every dense position; sparse execution supports {allowed})"
    elif redistribution:
        blocker = "redistribution=True (it needs a dense momentum of every weight)"
    elif growth == "gradient" and grad_accumulation > 1:
        blocker = f"gradient growth with grad_accumulation={grad_accumulation} (sparse execution uses 1)"
    if blocker is not None:
        if prebuilt:
            raise ValueError(f"the model holds sparse modules ({', '.join(prebuilt)}), which cannot run {blocker}")
        if execution == "sparse":
            raise ValueError(f"execution='sparse' cannot run {blocker}; use execution='masked'")
        return []
    if execution == "masked" or not params:
        return []
    from ..kernels.backend import numba_available
    from ..kernels.heuristics import prefer_sparse, sparse_execution_supported
    from ..nn.storage import why_not_convertible

    chosen, unsupported, off_device = [], {}, {}
    for n, p in params.items():
        reason = why_not_convertible(model, n)
        if reason is None and growth == "gradient" and p.dim() == 4 and not numba_available():
            reason = "Conv2d with gradient growth (its block-wise gradient score needs numba)"
        if reason is not None:
            unsupported[n] = reason
        elif not sparse_execution_supported(p.device):
            off_device[n] = str(p.device)
        elif execution == "sparse" or prefer_sparse(tuple(p.shape), densities[n], p.device):
            chosen.append(n)
    if execution == "sparse" and off_device:
        warnings.warn(f"execution='sparse': no sparse kernels on {sorted(set(off_device.values()))} yet; layers "
                      f"{', '.join(off_device)} run masked", UserWarning, stacklevel=3)
    if execution == "sparse" and unsupported:
        warnings.warn("execution='sparse': these layers run masked: " + "; ".join(
            f"{n}: {r}" for n, r in unsupported.items()), UserWarning, stacklevel=3)
    return chosen


def _check_active(name: str, flat: torch.Tensor, size: int) -> torch.Tensor:
    """A saved set of active positions: sorted, unique int64 flat indices in [0, size)."""
    if not isinstance(flat, torch.Tensor) or flat.dim() != 1 or flat.is_floating_point():
        raise ValueError(f"saved active indices of {name!r} must be a 1-D integer tensor")
    flat = flat.long().cpu()
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= size or bool((flat[1:] <= flat[:-1]).any())):
        raise ValueError(f"saved active indices of {name!r} must be sorted, unique and in [0, {size})")
    return flat
