"""Checkpoint state of a sparsifier: everything needed to continue bit-for-bit.

Version 3: the topology of every layer as sorted ``active`` flat indices with its ``shapes`` (the
same in both execution modes, so a state loads into either), the exploration state in index form,
the step, the generator, momentum and accumulated gradients, the update history and the target
densities. Versions 1 and 2 (bool ``masks`` and dense exploration tensors for masked layers) still
load. :func:`masks_from_state` reads the bool masks out of any version, for tools that want them.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from .exploration import ExplorationTracker
from .gradients import GradientMachinery
from .index_sets import mask_from_indices
from .masks import check_mask
from .store import LayerStore

STATE_VERSION = 3
READABLE_STATE_VERSIONS = (1, 2, 3)


def check_active(name: str, flat: torch.Tensor, size: int) -> torch.Tensor:
    """A saved set of active positions: sorted, unique int64 flat indices in [0, size)."""
    if not isinstance(flat, torch.Tensor) or flat.dim() != 1 or flat.is_floating_point():
        raise ValueError(f"saved active indices of {name!r} must be a 1-D integer tensor")
    flat = flat.long().cpu()
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= size or bool((flat[1:] <= flat[:-1]).any())):
        raise ValueError(f"saved active indices of {name!r} must be sorted, unique and in [0, {size})")
    return flat


def save_state(step: int, stores: Mapping[str, LayerStore], tracker: ExplorationTracker,
               generator: torch.Generator, gradients: GradientMachinery, history: list[dict],
               targets: Mapping[str, float | None]) -> dict:
    """The state dict of a sparsifier made of these parts (see the module docstring)."""
    grads = gradients.state_dict()
    return {
        "version": STATE_VERSION,
        "step": step,
        "names": list(stores),
        "shapes": {n: list(s.shape) for n, s in stores.items()},
        "active": {n: s.active().cpu().clone() for n, s in stores.items()},
        "exploration": tracker.state_dict(),
        "generator": generator.get_state(),
        "momentum": grads["momentum"],
        "grad_sum": grads["grad_sum"],
        "history": list(history),
        "layer_target_densities": dict(targets),
    }


def _check_version(state: Mapping) -> None:
    if not isinstance(state, Mapping) or state.get("version") not in READABLE_STATE_VERSIONS:
        raise ValueError(f"not a sparsetime DynamicSparsity state (expected version {STATE_VERSION})")


def masks_from_state(state: Mapping) -> dict[str, torch.Tensor]:
    """{name: bool mask} of every layer of a saved state (any readable version), on the CPU."""
    _check_version(state)
    masks = {str(n): check_mask(n, m, m.shape).cpu() for n, m in (state.get("masks") or {}).items()}
    shapes = state.get("shapes") or {}
    for name, flat in (state.get("active") or {}).items():
        if name not in shapes:
            raise ValueError(f"sparsifier state has active indices for {name!r} but no shape for it")
        shape = tuple(int(s) for s in shapes[name])
        masks[str(name)] = mask_from_indices(check_active(name, flat, math.prod(shape)), shape, "cpu")
    return masks


def read_topology(state: Mapping, stores: Mapping) -> dict[str, torch.Tensor]:
    """{name: sorted active flat indices} from a saved state, checked against ``stores``."""
    _check_version(state)
    masks, saved_active = dict(state.get("masks") or {}), dict(state.get("active") or {})
    mine, theirs = set(stores), set(masks) | set(saved_active)
    if mine != theirs:
        raise ValueError(f"checkpoint masks do not match the model's sparse layers: missing "
                         f"{sorted(mine - theirs)}, unexpected {sorted(theirs - mine)}")
    active = {}
    for n, store in stores.items():
        if n in masks:
            active[n] = check_mask(n, masks[n], store.shape).reshape(-1).nonzero().squeeze(1)
        else:
            active[n] = check_active(n, saved_active[n], store.size)
    return active


def load_state(state: Mapping, stores: Mapping[str, LayerStore], tracker: ExplorationTracker,
               generator: torch.Generator, gradients: GradientMachinery) -> tuple[int, list[dict], dict]:
    """Restore the parts from :func:`save_state` output (any readable version); returns the step,
    the update history and the target densities."""
    active = read_topology(state, stores)
    for n, store in stores.items():
        store.set_active(active[n])
    tracker.load_state_dict(state["exploration"], active)
    generator.set_state(state["generator"])
    gradients.load_state_dict(state["momentum"], state["grad_sum"])
    return int(state["step"]), list(state["history"]), dict(state["layer_target_densities"])
