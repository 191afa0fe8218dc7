"""Image classification data held whole in memory as uint8, normalised on the way out.

Small datasets (MNIST-like, CIFAR) live here as one (N, C, H, W) uint8 tensor; ``batch`` does
indexing, augmentation and normalisation for a whole batch in a few tensor ops, which is what
``batch_iterator`` uses. ``__getitem__`` does the same for one sample (global torch RNG).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from .augment import crop_flip, draw_crop_flip, random_crop_flip


@dataclass(frozen=True)
class CropFlip:
    """Augmentation settings: zero-padding for the random crop, and random horizontal flips."""

    padding: int = 4
    flip: bool = True


class InMemoryImageDataset(Dataset):
    """(float CxHxW normalised image, int label) pairs from uint8 images held in memory."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        augmentation: CropFlip | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        channels = images.shape[1]
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise ValueError(f"mean/std need {channels} entries (std > 0), got mean={mean}, std={std}")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.augmentation = augmentation
        std_t = torch.tensor(self.std).view(-1, 1, 1)
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = torch.tensor(self.mean).view(-1, 1, 1) / std_t

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one sample."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return self.images.shape[0]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (..., C, H, W) -> float32 ``(x / 255 - mean) / std``."""
        return images.to(torch.float32).mul_(self._scale).sub_(self._shift)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index].unsqueeze(0)
        if self.augmentation is not None:
            image = random_crop_flip(image, self.augmentation.padding, self.augmentation.flip)
        return self.normalize(image)[0], int(self.labels[index])

    def batch(
        self, indices: torch.Tensor, generator: torch.Generator | None = None, part: slice | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels at ``indices``, augmented with randomness from ``generator``.

        ``part`` keeps only a slice of the batch (one rank's share of a global batch): the
        augmentation is drawn for the whole batch, so the slice is exactly what a single process
        training on the whole batch would see at those positions.
        """
        if self.augmentation is None:
            chosen = indices if part is None else indices[part]
            return self.normalize(self.images[chosen]), self.labels[chosen]
        a = self.augmentation
        top, left, mirror = draw_crop_flip(indices.numel(), a.padding, a.flip, generator)
        if part is not None:
            indices, top, left, mirror = indices[part], top[part], left[part], mirror[part]
        images = crop_flip(self.images[indices], top, left, mirror, a.padding) if a.padding or a.flip \
            else self.images[indices]
        return self.normalize(images), self.labels[indices]

    def subset(self, indices: torch.Tensor, augmentation: CropFlip | None) -> InMemoryImageDataset:
        """A new dataset with the samples at ``indices`` (copied) and the given augmentation."""
        return InMemoryImageDataset(self.images[indices], self.labels[indices], self.mean, self.std, augmentation)
