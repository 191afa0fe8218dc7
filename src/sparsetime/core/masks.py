"""Exact-count random masks (positions uniform without replacement, never Bernoulli per weight)
and sparse-aware initialisation."""
from __future__ import annotations

import math

import torch


def random_mask(shape: tuple[int, ...], active: int, generator: torch.Generator,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """Bool mask with exactly ``active`` True entries, positions uniform without replacement."""
    size = math.prod(shape)
    if not 0 <= active <= size:
        raise ValueError(f"active count must be in [0, {size}], got {active}")
    flat = torch.zeros(size, dtype=torch.bool)
    flat[torch.randperm(size, generator=generator)[:active]] = True
    return flat.reshape(shape).to(device)


@torch.no_grad()
def sparse_init_(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Rescale each output unit's surviving weights by sqrt(fan_in_dense / fan_in_active).

    Keeps every unit's pre-activation variance equal to the dense initialisation's (Evci et al.
    2020). Units with no active input stay zero. Returns ``weight`` (modified in place).
    """
    out = weight.shape[0]
    fan_in_dense = weight.numel() // out
    active_in = mask.reshape(out, -1).sum(dim=1).to(weight.dtype)
    scale = torch.where(active_in > 0, (fan_in_dense / active_in.clamp(min=1)).sqrt(), torch.zeros_like(active_in))
    weight.mul_(scale.view(out, *([1] * (weight.dim() - 1))))
    weight.masked_fill_(~mask, 0.0)
    return weight


def check_mask(name: str, mask: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Validate a user-supplied mask for parameter ``name`` and return it as bool."""
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask for {name!r} must be a tensor, got {type(mask).__name__}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"mask for {name!r} has shape {tuple(mask.shape)}, parameter has {tuple(shape)}")
    if mask.dtype != torch.bool:
        if not torch.all((mask == 0) | (mask == 1)):
            raise ValueError(f"mask for {name!r} must be boolean or 0/1, got other values")
        mask = mask != 0
    return mask
