"""Deterministic train/validation split of a training set."""
from __future__ import annotations

import torch


def validation_count(n: int, validation_size: int | float) -> int:
    """Number of held-out samples: an int count, or a float fraction of ``n`` (rounded)."""
    if isinstance(validation_size, bool) or not isinstance(validation_size, (int, float)):
        raise ValueError(f"validation_size must be an int count or a float fraction, got {validation_size!r}")
    if isinstance(validation_size, float):
        if not 0.0 <= validation_size < 1.0:
            raise ValueError(f"validation_size as a fraction must be in [0, 1), got {validation_size}")
        count = round(validation_size * n)
    else:
        count = validation_size
    if not 0 <= count < n:
        raise ValueError(f"validation_size must leave at least one training sample: got {count} of {n}")
    return count


def split_indices(n: int, validation_size: int | float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) index tensors, disjoint, covering range(n), each sorted; seeded."""
    count = validation_count(n, validation_size)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    return order[count:].sort().values, order[:count].sort().values
