"""How a ticket's weights start training: restart, perturbation and pruned weights (runner glue).

Used by the lottery levels (``sparsity.method=lth``) and ticket transfer (``transfer``). The math
is in :mod:`sparsetime.pruning` (``ticket_restarts``, ``perturbations``); this module checks the
options and applies them in place to a model that holds the ticket's start weights (step k).

Options (absent unless given, so run names of earlier experiments stay as they were):
``criterion`` (which weights a level keeps, default large_final = magnitude), ``restart``
(default rewind), ``pruned`` (zero, or frozen at their start value), ``perturb`` and
``noise_scale`` (>= 0, relative to the layer's step-0 std; default 1), ``random_label_epochs``
(level 0 pre-trains on random labels first) and ``supermask_eval`` (report the accuracy of the
ticket's mask on its random init, untrained, as ``supermask_test_accuracy``).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sparsetime.pruning import CRITERIA, PERTURBATIONS, RESTARTS, perturb, random_reinit, restart_weights

from .method_checks import check_choice, check_int

PRUNED = ("zero", "frozen")
#: the ticket options with the value their absence means
TICKET_DEFAULTS: dict[str, Any] = {"criterion": "large_final", "restart": "rewind", "pruned": "zero", "perturb": None,
                                   "noise_scale": 1.0, "random_label_epochs": 0, "supermask_eval": False}


def ticket_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The ticket options of ``options`` with their defaults filled in."""
    return {k: options.get(k, v) for k, v in TICKET_DEFAULTS.items()}


def check_ticket_options(options: Mapping[str, Any]) -> None:
    """ValueError naming the bad value and the allowed ones, for any ticket option in ``options``."""
    o = ticket_options(options)
    check_choice("sparsity.options.criterion", o["criterion"], CRITERIA)
    check_choice("sparsity.options.restart", o["restart"], RESTARTS)
    check_choice("sparsity.options.pruned", o["pruned"], PRUNED)
    if o["perturb"] is not None:
        check_choice("sparsity.options.perturb", o["perturb"], PERTURBATIONS)
    scale = o["noise_scale"]
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 <= scale < float("inf"):
        raise ValueError(f"sparsity.options.noise_scale = {scale!r} is invalid; allowed: a number >= 0 "
                         "(times the layer's init std)")
    if "noise_scale" in options and o["perturb"] != "noise":
        raise ValueError(f"sparsity.options.noise_scale only applies with sparsity.options.perturb = noise "
                         f"(perturb is {o['perturb']!r})")
    check_int("sparsity.options.random_label_epochs", o["random_label_epochs"], 0)
    if not isinstance(o["supermask_eval"], bool):
        raise ValueError(f"sparsity.options.supermask_eval = {o['supermask_eval']!r} is invalid; allowed: true, false")


def changes_start(options: Mapping[str, Any]) -> bool:
    """Whether the options change the weights a ticket starts from (a restart other than rewind, a perturbation)."""
    o = ticket_options(options)
    return o["restart"] != "rewind" or o["perturb"] is not None


def _write(model: nn.Module, values: Mapping[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, v in values.items():
            params[n].copy_(v)


def _weights(model: nn.Module, names: Any) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {n: params[n].detach().clone() for n in names}


def start_ticket(model: nn.Module, masks: Mapping[str, torch.Tensor], init: Mapping[str, torch.Tensor],
                 options: Mapping[str, Any], seed: int) -> dict[str, torch.Tensor] | None:
    """Apply the restart and the perturbation to ``model`` (holding the step-k weights), in place.

    ``init`` is the step-0 state (perturbations reset to it, noise is scaled by its std). ``reinit``
    redraws the whole model with ``seed`` (as the reinit control); the other restarts change only the
    masked weights. Returns the pruned weights' frozen values (``pruned: frozen``), else None.
    """
    o = ticket_options(options)
    generator = torch.Generator().manual_seed(seed + 1)
    restart = o["restart"]
    if restart == "reinit":
        random_reinit(model, seed=seed)
    elif restart != "rewind":
        fresh = None
        if restart == "signs":
            other = copy.deepcopy(model)
            random_reinit(other, seed=seed)
            fresh = _weights(other, masks)
        _write(model, restart_weights(restart, _weights(model, masks), masks, fresh, generator))
    if o["perturb"] is not None:
        _write(model, perturb(o["perturb"], _weights(model, masks), init, masks, float(o["noise_scale"]), generator))
    return _weights(model, masks) if o["pruned"] == "frozen" else None
