"""A small deterministic dataset for tests and smoke runs.

Each class has a random prototype image; samples are the prototype plus Gaussian noise,
clipped and stored as uint8, so a classifier can learn the task. Labels are balanced.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .in_memory import InMemoryImageDataset


def _images(prototypes: torch.Tensor, labels: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    values = prototypes[labels] + noise * torch.randn(prototypes[labels].shape, generator=generator)
    return (values.clamp(0.0, 1.0) * 255).round().to(torch.uint8)


def _labels(n: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    labels = torch.arange(n) % num_classes
    return labels[torch.randperm(n, generator=generator)]


def make_synthetic(
    train_size: int = 512,
    test_size: int = 128,
    shape: Sequence[int] = (1, 8, 8),
    num_classes: int = 4,
    noise: float = 0.3,
    data_seed: int = 0,
) -> tuple[InMemoryImageDataset, InMemoryImageDataset]:
    """(train, test) datasets of ``shape`` (C, H, W) images; same arguments, same data."""
    shape = tuple(shape)
    if len(shape) != 3 or any(not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"shape must be (C, H, W) positive ints, got {shape!r}")
    for label, value in (("train_size", train_size), ("test_size", test_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive int, got {value!r}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    generator = torch.Generator().manual_seed(data_seed)
    prototypes = torch.rand((num_classes, *shape), generator=generator)
    train_labels = _labels(train_size, num_classes, generator)
    test_labels = _labels(test_size, num_classes, generator)
    train_images = _images(prototypes, train_labels, noise, generator)
    test_images = _images(prototypes, test_labels, noise, generator)
    pixels = train_images.to(torch.float64).div(255).transpose(0, 1).reshape(shape[0], -1)
    mean = pixels.mean(dim=1).tolist()
    std = pixels.std(dim=1).clamp_min(1e-3).tolist()
    return (
        InMemoryImageDataset(train_images, train_labels, mean, std),
        InMemoryImageDataset(test_images, test_labels, mean, std),
    )
