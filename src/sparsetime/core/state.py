"""Checkpoint state of a sparsifier: everything needed to continue bit-for-bit.

Version 3: the topology of masked layers as bool ``masks``, of sparse layers as sorted ``active``
flat indices (either loads into either execution mode), the exploration state in index form, the
step, the generator, momentum and accumulated gradients, the update history and the target
densities. Versions 1 and 2 (dense exploration tensors for masked layers) still load.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from .masks import check_mask

if TYPE_CHECKING:  # pragma: no cover
    from .sparsifier import DynamicSparsity

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


def save_state(sp: "DynamicSparsity") -> dict:
    """The state dict of ``sp`` (see the module docstring)."""
    stores = sp.stores
    grads = sp.gradients.state_dict()
    return {
        "version": STATE_VERSION,
        "step": sp.step_count,
        "names": list(stores),
        "shapes": {n: list(s.shape) for n, s in stores.items()},
        "masks": {n: s.dense_mask().cpu().clone() for n, s in stores.items() if s.execution == "masked"},
        "active": {n: s.active().cpu().clone() for n, s in stores.items() if s.execution != "masked"},
        "exploration": sp.tracker.state_dict(),
        "generator": sp.generator.get_state(),
        "momentum": grads["momentum"],
        "grad_sum": grads["grad_sum"],
        "history": list(sp.update_history),
        "layer_target_densities": dict(sp.layer_target_densities),
    }


def read_topology(state: Mapping, stores: Mapping) -> dict[str, torch.Tensor]:
    """{name: sorted active flat indices} from a saved state, checked against ``stores``."""
    if not isinstance(state, Mapping) or state.get("version") not in READABLE_STATE_VERSIONS:
        raise ValueError(f"not a sparsetime DynamicSparsity state (expected version {STATE_VERSION})")
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


def load_state(sp: "DynamicSparsity", state: Mapping) -> None:
    """Restore ``sp`` from :func:`save_state` output (any readable version)."""
    active = read_topology(state, sp.stores)
    for n, store in sp.stores.items():
        store.set_active(active[n])
    sp.tracker.load_state_dict(state["exploration"], active)
    sp.generator.set_state(state["generator"])
    sp._step = int(state["step"])
    sp.gradients.load_state_dict(state["momentum"], state["grad_sum"])
    sp.update_history = list(state["history"])
    sp.layer_target_densities = dict(state["layer_target_densities"])
