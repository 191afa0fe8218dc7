"""The one topology-update step shared by every DST method and both execution modes.

Per layer l with n_l active weights of N_l: k_l = floor(f(t) n_l) (capped by the free positions
when just-dropped ones may not be regrown). All drops are chosen first, then all growths, so
equal weights and generator states give equal topologies whatever the storage:

1. drop: the drop criterion picks k_l of the active entries (the smallest scores, seeded
   tie-break; exact counts);
2. grow: k_l strictly inactive positions (just-dropped ones included unless
   ``regrow_dropped=False``) from the growth criterion: its index sampler, else its dense score
   on a dense layer, else its gradient score evaluated in row blocks by the store;
3. optional redistribution moves growth budget across layers in proportion to the mean
   |momentum| of their active weights, capped by each layer's free positions (total constant);
4. the store replaces the entries (grown ones start at exactly 0 with zero optimizer state) and
   the exploration tracker books the change; layers left unchanged still book survival.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from .criteria import DropCriterion, GrowthCriterion, LayerView
from .exploration import ExplorationTracker
from .index_sets import complement_sorted, isin_sorted
from .store import LayerStore
from .topology import allocate, drop_count, select_grow

log = logging.getLogger("sparsetime")


@dataclass
class UpdateContext:
    """Everything an update reads besides the stores: criteria, RNG and dense gradient sources."""

    drop: DropCriterion
    growth: GrowthCriterion
    generator: torch.Generator
    tracker: ExplorationTracker
    regrow_dropped: bool
    redistribution: bool
    gradient: Callable[[str], torch.Tensor]          # dense growth gradient of a dense layer
    momentum: Mapping[str, torch.Tensor]              # dense momentum of dense layers (may be empty)


def drop_view(store: LayerStore, generator: torch.Generator) -> LayerView:
    """What a drop criterion sees: the active entries only, 1-D, aligned with ``store.active()``."""
    values = store.values()
    ones = torch.ones(values.shape, dtype=torch.bool, device=values.device)
    return LayerView(name=store.name, weight=values, mask=ones, fired=ones, generator=generator,
                     grad=store.active_grad())


def grow(store: LayerStore, excluded: torch.Tensor, k: int, ctx: UpdateContext) -> torch.Tensor:
    """Sorted flat indices of k positions outside ``excluded`` picked by the growth criterion."""
    rec, name = ctx.growth, store.name
    if rec.sampler is not None:
        return rec.sampler(store.size, excluded, lambda: ctx.tracker.fired_indices(name), k, ctx.generator)
    if store.dense:
        view = LayerView(name=name, weight=store.param.detach(), mask=store.dense_mask(),
                         fired=ctx.tracker.fired_mask(name, store.shape), generator=ctx.generator,
                         grad=ctx.gradient(name) if rec.needs == "grad" else None,
                         momentum=ctx.momentum.get(name))
        return select_grow(complement_sorted(excluded, store.size), rec.dense_scores(view), k, ctx.generator)
    if rec.grad_score is None:  # pragma: no cover - refused when the layers are planned
        raise ValueError(f"growth {rec.name!r} cannot run on the sparse layer {name!r}")
    return store.gradient_topk(k, excluded, rec.grad_score, ctx.generator)


def _grow_counts(stores: Mapping[str, LayerStore], plans: dict, ctx: UpdateContext) -> dict[str, int]:
    if not ctx.redistribution or not plans:
        return {n: local.numel() for n, local in plans.items()}
    names = list(plans)
    weights, caps = [], []
    for n in names:
        store, dropped = stores[n], plans[n].numel()
        active = store.active()
        mean = float(ctx.momentum[n].reshape(-1)[active].abs().sum()) / max(active.numel(), 1)
        weights.append(mean)
        free_after_drop = store.size - (store.count() - dropped)
        caps.append(free_after_drop if ctx.regrow_dropped else store.size - store.count())
    total = sum(plans[n].numel() for n in names)
    return dict(zip(names, allocate(total, weights, caps)))


@dataclass
class LayerUpdate:
    """What an update did to one layer: sorted flat indices dropped and grown, and for each new
    active entry its old position (-1 for grown ones)."""

    dropped: torch.Tensor
    grown: torch.Tensor
    src: torch.Tensor


def drop_count_for(store: LayerStore, fraction: float, regrow_dropped: bool) -> int:
    """k_l = floor(f n_l); 0 for an empty or full layer; capped by the free positions when
    just-dropped positions may not be regrown."""
    n_active, size = store.count(), store.size
    k = 0 if n_active in (0, size) else drop_count(fraction, n_active)
    return min(k, size - n_active) if not regrow_dropped else k


def choose_drops(store: LayerStore, k: int, ctx: UpdateContext) -> torch.Tensor:
    """Sorted positions (into ``store.active()``) of the k entries the drop criterion removes."""
    return ctx.drop.choose(drop_view(store, ctx.generator), k, ctx.generator)


@torch.no_grad()
def drop_and_grow(store: LayerStore, local: torch.Tensor, k_grow: int, step: int, ctx: UpdateContext) -> LayerUpdate:
    """Remove the entries ``local`` of ``store``, grow ``k_grow`` positions, book it in the tracker."""
    active = store.active()
    keep_mask = torch.ones(active.numel(), dtype=torch.bool, device=active.device)
    keep_mask[local] = False
    keep = keep_mask.nonzero().squeeze(1)
    grown = grow(store, active[keep] if ctx.regrow_dropped else active, k_grow, ctx)
    values = store.values()
    src = store.replace(keep, grown)
    ctx.tracker.record(store.name, step, values, active, local, grown, src)
    return LayerUpdate(active[local], grown, src)


@torch.no_grad()
def update_topology(stores: Mapping[str, LayerStore], step: int, fraction: float, ctx: UpdateContext) -> dict:
    """Drop and regrow every layer at ``step`` with drop fraction ``fraction``; returns the statistics."""
    plans: dict[str, torch.Tensor] = {}  # name -> positions into the active entries to drop
    for name, store in stores.items():
        k = drop_count_for(store, fraction, ctx.regrow_dropped)
        if k > 0:
            plans[name] = choose_drops(store, k, ctx)
    grow_counts = _grow_counts(stores, plans, ctx)
    stats = {"step": step, "drop_fraction": fraction, "dropped": 0, "grown": 0, "changed": 0, "removed": 0}
    for name, store in stores.items():
        if name not in plans:
            ctx.tracker.record_unchanged(name)
            continue
        done = drop_and_grow(store, plans[name], grow_counts[name], step, ctx)
        regrown = int(isin_sorted(done.dropped, done.grown).sum())
        stats["dropped"] += done.dropped.numel()
        stats["grown"] += done.grown.numel()
        stats["changed"] += done.grown.numel() - regrown
        stats["removed"] += done.dropped.numel() - regrown
    ctx.tracker.finish_update(step)
    active_total = sum(s.count() for s in stores.values())
    total = sum(s.size for s in stores.values())
    stats.update({
        "replaced_fraction": stats["changed"] / active_total if active_total else 0.0,
        "hamming": (stats["changed"] + stats["removed"]) / total,
        "itop_rate": ctx.tracker.rate(),
        "density": active_total / total,
    })
    log.info("step %d: topology update, drop fraction %.4f, replaced %.4f of active, Rs %.4f",
             step, fraction, stats["replaced_fraction"], stats["itop_rate"])
    return stats
