"""`DynamicSparsity`: turn any model + optimizer into a dynamic-sparse-training run.

Optimizer-like (cf. ``torch.ao.pruning``): call :meth:`DynamicSparsity.step` after every
``optimizer.step()``. It keeps pruned weights and their optimizer state at exactly zero and, every
``update_interval`` steps, drops and regrows connections. The object is a thin composition of
parts with one job each: validated options (:mod:`.options`), the layers and their stores
(:mod:`.layers`, :mod:`.store`), gradient machinery (:mod:`.gradients`), the update step
(:mod:`.update`), exploration bookkeeping (:mod:`.exploration`) and checkpoint state
(:mod:`.state`). All randomness comes from the sparsifier's own seeded generator.
"""
from __future__ import annotations

import logging
import operator
from collections.abc import Collection, Mapping, Sequence

import torch
from torch import nn

from .distributed import broadcast_generator_, check_same_topology, is_distributed
from .exploration import ExplorationTracker
from .gradients import GradientMachinery
from .layers import build_layers
from .masked_store import MaskedStore
from .options import build_options
from .defaults import DEFAULT_UPDATE_INTERVAL
from .report import format_layer_table, layer_report
from .state import load_state, save_state
from .update import UpdateContext, update_topology

log = logging.getLogger("sparsetime")


def _setting(path: str, doc: str) -> property:
    """A read-only attribute forwarding to the validated options (``"schedule.interval"``, ...)."""
    get = operator.attrgetter(path)
    return property(lambda self: get(self.options), doc=doc)


class DynamicSparsity:
    """Dynamic sparse training (SET / RigL / SNFS / ITOP) over a model's Linear and Conv weights.

    Args:
        model: the network; its Linear/ConvNd weights, and the fused Q/K/V projection
            ``in_proj_weight`` of every ``nn.MultiheadAttention`` (a (3E, E) Linear weight), form
            the masked set (see ``dense_layers``).
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
        sparse_init: rescale surviving weights per unit by sqrt(fan_in / active fan_in), so each
            unit keeps its pre-activation variance; default on for sampled masks, off when
            ``initial_masks`` are given (their weights usually come from pruning).
        regrow_dropped: whether just-dropped positions may be regrown in the same update.
        redistribution: move regrowth budget across layers by mean |momentum| (SNFS).
        grad_accumulation: average the dense gradient of the last g steps (g <= update_interval)
            before an update for gradient growth.
        momentum_beta: EMA coefficient of dense gradients for momentum growth / redistribution.
        seed: seed of the sparsifier's generator (masks, tie-breaks, random growth).
        initial_masks: {name: bool mask} to start from (e.g. from pruning); defines the density.
        execution: how the sparse layers run. "masked": dense tensor times a bool mask (any layer,
            any device). "sparse": every nn.Linear / nn.Conv2d of the masked set is replaced, in
            place in ``model``, by a sparse module (values + int32 CSR indices, sparse kernels),
            so weights, gradients and optimizer state are O(nnz) and the optimizer is moved onto
            the modules' ``weight_values``; layers without sparse kernels, layers whose parent reads
            their ``.weight`` (``nn.MultiheadAttention``'s ``out_proj``, the fast path of
            ``nn.TransformerEncoderLayer``), and all layers on CUDA stay masked with a warning.
            "auto": sparse only where the kernels are faster (large layers at density <= ~0.15).
            Sparse execution supports growth criteria with an index sampler (random, unexplored)
            or a gradient score (gradient, with grad_accumulation 1), without redistribution.
            Sparse modules already in ``model`` (e.g. a 1M-neuron MLP of SparseLinear layers,
            which has no dense form) always run sparse and keep their pattern; ``density`` then
            applies to the model's dense Linear/Conv layers only and may be None when there are none.
        grad_masking: zero inactive gradients in a post-accumulate-grad hook (one pass over the
            gradient) instead of re-masking weights and every optimizer state after each step.
            None (default) turns it on for SGD/Adam/AdamW when no dense gradient is needed every
            step (not momentum growth / redistribution) and no multi-process group is running.
            Steps whose dense gradient is read keep it and re-mask everything. Gradients must come
            from ``backward()`` for the hook to run; else pass ``grad_masking=False``.
        check_consistency: after every topology update, compare a checksum of every layer's active
            set over the ranks of the process group and raise ``TopologyMismatchError`` naming the
            layer and the ranks that disagree. None (default): on when a process group of more
            than one rank exists.
        sparse_layers: under ``execution="auto"`` or ``"sparse"``, run exactly these layers (weight
            names, e.g. ``"fc1.weight"``) sparse and the others masked, instead of deciding. For
            resuming: a model state dict holds the sparse modules it was saved with, and a later
            version's "auto" may choose other layers; ``st.nn.stored_sparse_layers(state_dict)``
            reads the plan back (the runner does this on resume). ValueError when a name is not a
            sparse layer of the model or cannot run sparse here.

    Under ``torch.distributed`` (DistributedDataParallel) the initial masks and the generator
    state come from rank 0, so every rank trains the same network. Build the sparsifier on every
    rank with the same arguments; with ``execution="sparse"`` build it before wrapping the model in
    DDP (it replaces modules). FSDP and other sharded wrappers are refused.
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
        update_interval: int | None = DEFAULT_UPDATE_INTERVAL,
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
        check_consistency: bool | None = None,
        sparse_layers: Collection[str] | None = None,
    ) -> None:
        opts = build_options(
            density=density, distribution=distribution, growth=growth, drop=drop, drop_fraction=drop_fraction,
            drop_schedule=drop_schedule, min_drop_fraction=min_drop_fraction, update_interval=update_interval,
            total_steps=total_steps, start_step=start_step, stop_fraction=stop_fraction, dense_layers=dense_layers,
            dense_first=dense_first, dense_last=dense_last, extra_layers=extra_layers, erk_power=erk_power,
            sparse_init=sparse_init, regrow_dropped=regrow_dropped, redistribution=redistribution,
            grad_accumulation=grad_accumulation, momentum_beta=momentum_beta, seed=seed, execution=execution,
            grad_masking=grad_masking, check_consistency=check_consistency, sparse_layers=sparse_layers)
        self.options, self.schedule = opts, opts.schedule
        self.model, self.optimizer = model, optimizer
        self.generator = torch.Generator().manual_seed(opts.seed)
        broadcast_generator_(self.generator)  # one generator state on every rank, whatever their seeds
        built = build_layers(model, optimizer, opts, initial_masks, self.generator)
        #: {weight name: LayerStore} of every sparse layer, in model order
        self.stores = built.stores
        self.layer_target_densities = built.target_densities
        self.sparse_init = opts.sparse_init if opts.sparse_init is not None else initial_masks is None
        self._step = 0
        self.update_history: list[dict] = []
        #: compare every layer's active set over the ranks after each update (on when distributed)
        self.check_consistency = is_distributed() if check_consistency is None else bool(check_consistency)
        self.tracker = ExplorationTracker({n: (s.size, s.active()) for n, s in self.stores.items()})
        self.gradients = GradientMachinery(self.stores, optimizer, self.schedule, opts.needs_grad,
                                           opts.needs_momentum, opts.grad_accumulation, opts.momentum_beta,
                                           opts.grad_masking)
        self._by_kind: dict[type, list] = {}
        for s in self.stores.values():
            self._by_kind.setdefault(type(s), []).append(s)
        self._after_step_all()
        self.gradients.prepare(1)
        if self.check_consistency:  # sparse modules the user built must agree too
            check_same_topology({n: s.active() for n, s in self.stores.items()}, 0)
        log.info("sparsetime: %d sparse layers (%d executed sparse), realised density %.5f (target %s)\n%s",
                 len(self.stores), sum(s.execution == "sparse" for s in self.stores.values()), self.density(),
                 density, self.format_layer_table())

    # ------------------------------------------------------------------ settings, read-only
    target_density = _setting("density", "The requested overall density (None: from masks or modules).")
    distribution = _setting("distribution", "The per-layer density distribution.")
    growth = _setting("growth.name", "Name of the growth criterion.")
    drop = _setting("drop.name", "Name of the drop criterion.")
    drop_fraction = _setting("schedule.drop_fraction", "Drop fraction alpha at the start.")
    min_drop_fraction = _setting("schedule.min_drop_fraction", "Floor f_min of the drop-fraction schedule.")
    drop_schedule = _setting("schedule.drop_schedule", "Name of the drop-fraction schedule.")
    update_interval = _setting("schedule.interval", "Steps between topology updates (None: static).")
    total_steps = _setting("schedule.total_steps", "Total optimizer steps T (None: unknown).")
    start_step = _setting("schedule.start_step", "Updates happen only after this step.")
    stop_fraction = _setting("schedule.stop_fraction", "Updates stop after T * stop_fraction.")
    regrow_dropped = _setting("regrow_dropped", "Whether just-dropped positions may be regrown.")
    redistribution = _setting("redistribution", "Whether growth budget moves across layers (SNFS).")
    grad_accumulation = _setting("grad_accumulation", "Gradient steps averaged for gradient growth.")
    momentum_beta = _setting("momentum_beta", "EMA coefficient of the gradient momentum.")
    seed = _setting("seed", "Seed of the sparsifier's generator.")
    execution = _setting("execution", "The requested execution mode (see ``layer_execution``).")

    # ------------------------------------------------------------------ topology, read-only
    @property
    def layer_names(self) -> list[str]:
        """Names of every sparse layer (weights named as in the dense model, e.g. "fc1.weight")."""
        return list(self.stores)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {n: s.shape for n, s in self.stores.items()}

    @property
    def params(self) -> dict[str, nn.Parameter]:
        """Dense parameters of the layers executed masked."""
        return {n: s.param for n, s in self.stores.items() if isinstance(s, MaskedStore)}

    @property
    def counts(self) -> dict[str, int]:
        """{weight name: number of active weights}."""
        return {n: s.count() for n, s in self.stores.items()}

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """{weight name: bool mask} of every sparse layer. Live for masked layers (do not modify in
        place); materialised on each access for layers executed sparse (O(size) memory)."""
        return {n: s.dense_mask() for n, s in self.stores.items()}

    @property
    def fired_masks(self) -> dict[str, torch.Tensor]:
        """{weight name: bool mask of every position ever active} (materialised, O(size))."""
        return {n: self.tracker.fired_mask(n, s.shape) for n, s in self.stores.items()}

    @property
    def layer_execution(self) -> dict[str, str]:
        """{weight name: "masked" or "sparse"}: how each layer runs (see ``execution``)."""
        return {n: s.execution for n, s in self.stores.items()}

    @property
    def step_count(self) -> int:
        return self._step

    @property
    def grad_masking(self) -> bool:
        """Whether the gradient-masking hooks are active."""
        return self.gradients.grad_masking

    def active_indices(self, name: str) -> torch.Tensor:
        """Sorted int64 flat indices of the active weights of layer ``name`` (either execution)."""
        return self.stores[name].active()

    def density(self) -> float:
        """Realised density over the masked set."""
        return sum(s.count() for s in self.stores.values()) / sum(s.size for s in self.stores.values())

    def current_densities(self) -> dict[str, float]:
        """{weight name: realised density} of every sparse layer (no dense mask is built)."""
        return {n: s.count() / s.size for n, s in self.stores.items()}

    def exploration_rate(self) -> float:
        """The ITOP rate Rs = sum |F_l| / sum N_l over the masked set."""
        return self.tracker.rate()

    def layer_exploration_rates(self) -> dict[str, float]:
        return {n: self.tracker.layer_rate(n) for n in self.stores}

    def exploration_stats(self) -> dict:
        """Rs, survival to the next update, reliably-explored fraction, lifetime histogram."""
        return self.tracker.stats()

    def drop_fraction_at(self, step: int) -> float:
        return self.schedule.drop_fraction_at(step)

    def is_update_step(self, step: int) -> bool:
        return self.schedule.is_update_step(step)

    def layer_report(self) -> list[dict]:
        """Per layer: name, shape, size, density, active count, target density, Rs, execution."""
        return layer_report(self.stores, self.layer_target_densities, self.tracker)

    def format_layer_table(self) -> str:
        return format_layer_table(self.layer_report())

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def step(self) -> dict | None:
        """Call after ``optimizer.step()``: keep pruned weights at zero, maybe update the topology.

        Returns the update's statistics on update steps, else None.
        """
        self._step += 1
        t = self._step
        update = self.schedule.is_update_step(t)
        if self.gradients.needs_remask() or update:
            self._after_step_all()
        self.gradients.after_optimizer_step(t)
        stats = self.update_topology() if update else None
        self.gradients.prepare(t + 1)
        return stats

    @torch.no_grad()
    def update_topology(self) -> dict:
        """Drop and regrow every layer now; returns this update's statistics."""
        t = self._step
        g = self.gradients
        ctx = UpdateContext(drop=self.options.drop, growth=self.options.growth, generator=self.generator,
                            tracker=self.tracker, regrow_dropped=self.options.regrow_dropped,
                            redistribution=self.options.redistribution,
                            gradient=lambda n: g.growth_gradient(n, t), momentum=g.momentum)
        stats = update_topology(self.stores, t, self.schedule.drop_fraction_at(t), ctx)
        g.clear()
        if self.check_consistency:
            check_same_topology({n: s.active() for n, s in self.stores.items()}, t)
        self.update_history.append(stats)
        return stats

    def remove_hooks(self) -> None:
        """Detach the gradient hooks (e.g. before training the model densely again)."""
        self.gradients.remove_hooks()

    def _after_step_all(self) -> None:
        for kind, stores in self._by_kind.items():
            kind.after_step_all(stores)

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict:
        """Everything needed to continue bit-for-bit: topology, exploration state, step, RNG.

        Masked layers save a bool ``masks`` entry, sparse layers their sorted active flat indices
        (``active``); either loads into either execution mode.
        """
        return save_state(self._step, self.stores, self.tracker, self.generator, self.gradients,
                          self.update_history, self.layer_target_densities)

    def load_state_dict(self, state: Mapping) -> None:
        """Restore from :meth:`state_dict`; names and shapes must match this sparsifier's layers."""
        self._step, self.update_history, self.layer_target_densities = load_state(
            state, self.stores, self.tracker, self.generator, self.gradients)
        self._after_step_all()
        self.gradients.prepare(self._step + 1)

