"""Perturbations of a ticket at its rewind step k (Frankle et al. 2020b), as pure tensor functions.

``ticket`` holds a layer's weights at step k, ``init`` those at step 0, ``mask`` the ticket's mask;
only surviving positions change. Signs or magnitudes reset to step 0; permutations of the
surviving values over all layers, within a layer, within a filter (an output unit: index 0 of the
weight), or within a layer among weights of the same sign; and Gaussian noise of std
``noise_scale`` times the std of the layer's step-0 weights.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ._common import Masks
from .ticket_restarts import layer_std, permute_masked, sign_of

PERTURBATIONS = ("signs_to_init", "magnitudes_to_init", "permute_global", "permute_layer", "permute_filter",
                 "permute_same_sign", "noise")


def signs_to_init(ticket: torch.Tensor, init: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Surviving weights keep their magnitude at step k and take their sign at step 0."""
    return torch.where(mask, ticket.abs() * sign_of(init), ticket)


def magnitudes_to_init(ticket: torch.Tensor, init: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Surviving weights keep their sign at step k and take their magnitude at step 0."""
    return torch.where(mask, sign_of(ticket) * init.abs(), ticket)


def permute_filter(ticket: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Surviving values permuted within each filter (each slice along dimension 0)."""
    return torch.stack([permute_masked(t, m, generator) for t, m in zip(ticket, mask)])


def permute_same_sign(ticket: torch.Tensor, mask: torch.Tensor,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Surviving values permuted within the layer, positives among positives, negatives among negatives."""
    positive = permute_masked(ticket, mask & (ticket >= 0), generator)
    return permute_masked(positive, mask & (ticket < 0), generator)


def permute_global(tickets: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor],
                   generator: torch.Generator | None = None) -> Masks:
    """Surviving values of all layers permuted together over all surviving positions."""
    names = list(masks)
    flat = torch.cat([tickets[n].detach().reshape(-1).cpu() for n in names])
    where = torch.cat([masks[n].reshape(-1).cpu() for n in names])
    shuffled = permute_masked(flat, where, generator)
    out, offset = {}, 0
    for n in names:
        size = tickets[n].numel()
        out[n] = shuffled[offset:offset + size].reshape(tickets[n].shape).to(tickets[n].device)
        offset += size
    return out


def add_noise(ticket: torch.Tensor, mask: torch.Tensor, noise_scale: float, init_std: float,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Surviving weights plus N(0, (noise_scale * init_std)^2) noise."""
    if not noise_scale >= 0:
        raise ValueError(f"noise_scale = {noise_scale!r} is invalid; allowed: a number >= 0")
    noise = torch.randn(ticket.shape, generator=generator, dtype=ticket.dtype).to(ticket.device)
    return torch.where(mask, ticket + noise * (noise_scale * init_std), ticket)


def perturb(kind: str, tickets: Mapping[str, torch.Tensor], init: Mapping[str, torch.Tensor],
            masks: Mapping[str, torch.Tensor], noise_scale: float = 1.0,
            generator: torch.Generator | None = None) -> Masks:
    """{name: perturbed weights} for every layer of ``masks`` under perturbation ``kind``."""
    if kind not in PERTURBATIONS:
        raise ValueError(f"perturbation {kind!r} is unknown; allowed: {', '.join(PERTURBATIONS)}")
    if kind == "permute_global":
        return permute_global(tickets, masks, generator)
    out = {}
    for n, m in masks.items():
        t, m = tickets[n].detach(), m.to(tickets[n].device)
        if kind == "signs_to_init":
            out[n] = signs_to_init(t, init[n].to(t.device), m)
        elif kind == "magnitudes_to_init":
            out[n] = magnitudes_to_init(t, init[n].to(t.device), m)
        elif kind == "permute_layer":
            out[n] = permute_masked(t, m, generator)
        elif kind == "permute_filter":
            out[n] = permute_filter(t, m, generator)
        elif kind == "permute_same_sign":
            out[n] = permute_same_sign(t, m, generator)
        else:
            out[n] = add_noise(t, m, noise_scale, layer_std(init[n]), generator)
    return out
