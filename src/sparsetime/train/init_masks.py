"""Masks a run starts from: pruning at initialisation, a masks file, or a finished run's checkpoint.

Used by the pruning-at-init methods (their whole job), by ``sparsity.init_mask`` (masks that seed
a set/rigl/snfs/static run, e.g. SNIP-SET-ITOP or LTH-SET-ITOP) and by the lottery levels, which
all then train with a static-mask ``DynamicSparsity`` (:func:`static_sparsifier`).
"""
from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsetime.core.selection import select_sparse_parameters
from sparsetime.core.sparsifier import DynamicSparsity
from sparsetime.core.state import masks_from_state

from .config import SparsityConfig
from .context import SparsifierContext
from .method_checks import SCOPES, check_choice, check_options

log = logging.getLogger(__name__)

PRUNE_AT_INIT = ("snip", "grasp", "synflow", "random", "magnitude")
# score-function keywords the runner fills itself (not user options)
_RUNNER_FILLED = {"generator", "seed", "masks", "device", "loss_fn", "density", "scope", "input_shape",
                  "dense_layers", "dense_first", "dense_last", "extra_layers"}
Masks = dict[str, torch.Tensor]


def selection(s: SparsityConfig) -> dict[str, Any]:
    """The layer-selection keywords of ``s`` (which weights are sparse)."""
    return {"dense_layers": s.dense_layers or None, "dense_first": s.dense_first, "dense_last": s.dense_last}


def score_option_names(method: str) -> list[str]:
    """User options ``sparsity.options`` may hold for pruning-at-init ``method`` (besides ``scope``)."""
    from sparsetime.pruning import score_options

    return sorted(set(score_options(method)) - _RUNNER_FILLED)


def full_masks(model: nn.Module, s: SparsityConfig) -> Masks:
    """All-True masks over the masked set (ValueError for a model with no sparsifiable layer)."""
    params = select_sparse_parameters(model, **selection(s))
    return {n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()}


def pruning_masks(ctx: SparsifierContext, method: str, options: Mapping[str, Any] | None = None) -> Masks:
    """Masks of pruning-at-init ``method`` at ``ctx.sparsity.density``, scored on ``ctx.train_batches()``.

    ``options`` may hold ``scope`` and the method's score options; ties and random scores use ``ctx.seed``.
    """
    from sparsetime.pruning import prune

    check_choice("pruning method", method, PRUNE_AT_INIT)
    options = dict(options or {})
    scope = options.pop("scope", "global")
    check_choice("scope", scope, SCOPES)
    check_options(method, options, set(score_option_names(method)))
    if method in ("snip", "grasp"):
        options["loss_fn"] = ctx.loss_fn
    batches = ctx.train_batches() if method in ("snip", "grasp", "synflow") else None  # synflow: input shape
    s = ctx.sparsity
    masks = prune(ctx.model, method, s.density, batches=batches, scope=scope, seed=ctx.seed,
                  **selection(s), **options)
    log.info("%s masks at density %g (%s scope) computed before training", method, s.density, scope)
    return masks


def load_masks(path: str | Path) -> Masks:
    """Masks from a masks file ({name: bool tensor}) or a run directory's ``checkpoint.pt``."""
    path = Path(path)
    file = path / "checkpoint.pt" if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"no masks at {str(path)!r}: expected a masks file or a run directory with checkpoint.pt")
    try:  # weights_only: a masks file is untrusted input, never unpickled as code
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        detail = " ".join(str(exc).split("Check the documentation")[0].split())[:300]
        raise ValueError(f"sparsity.init_mask file {str(file)!r} is not a masks file that can be loaded safely "
                         f"(tensors and plain containers only): {detail}") from None
    for key in ("sparsifier", "dynamic"):  # run checkpoint -> lottery level state -> DynamicSparsity state
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if isinstance(state, Mapping) and "version" in state and ("active" in state or "masks" in state):
        state = masks_from_state(state)  # a DynamicSparsity state, any version
    elif isinstance(state, Mapping) and isinstance(state.get("masks"), Mapping):
        state = state["masks"]  # a GMP state
    if not isinstance(state, Mapping) or not state or not all(
            isinstance(m, torch.Tensor) and m.dtype == torch.bool for m in state.values()):
        raise ValueError(f"{str(file)!r} holds no masks (a mapping of parameter name -> bool tensor)")
    return {str(n): m for n, m in state.items()}


def check_init_mask(value: str) -> None:
    """ValueError unless ``value`` is a pruning-at-init method or an existing masks file / run directory."""
    if value in PRUNE_AT_INIT:
        return
    path = Path(value)
    if not (path.is_file() or (path / "checkpoint.pt").is_file()):
        raise ValueError(f"sparsity.init_mask = {value!r} is neither a pruning method ({', '.join(PRUNE_AT_INIT)}) "
                         "nor an existing masks file or run directory with checkpoint.pt")


def initial_masks(ctx: SparsifierContext, options: Mapping[str, Any] | None = None) -> Masks:
    """The masks ``sparsity.init_mask`` names, for ``DynamicSparsity(initial_masks=...)``.

    A pruning method is scored on the model at initialisation (``options``: ``scope`` and score
    options, from ``sparsity.options.init_options``); a path is loaded (the weights are not: with
    the same seed and model the run starts from the same initial weights). On resume all-True
    placeholders are returned, since the checkpoint restores the masks.
    """
    s = ctx.sparsity
    if ctx.resuming:
        return full_masks(ctx.model, s)
    if s.init_mask in PRUNE_AT_INIT:
        return pruning_masks(ctx, s.init_mask, options)
    if options:
        raise ValueError(f"sparsity.options.init_options {dict(options)} only apply when sparsity.init_mask is a "
                         f"pruning method ({', '.join(PRUNE_AT_INIT)}), not a path")
    masks = load_masks(s.init_mask)
    device = next(iter(ctx.model.parameters())).device
    return {n: m.to(device) for n, m in masks.items()}


def static_sparsifier(ctx: SparsifierContext, masks: Masks, rescale: bool = False) -> DynamicSparsity:
    """Static sparse training under ``masks`` (no topology update). ``rescale``: sparse-aware init of
    the surviving weights (on for masks found at initialisation, off for rewound or trained weights)."""
    return DynamicSparsity(ctx.model, ctx.optimizer, None, initial_masks=masks, update_interval=None,
                           sparse_init=rescale, seed=ctx.seed, execution=ctx.sparsity.execution,
                           sparse_layers=ctx.sparse_layers,
                           **selection(ctx.sparsity))
