"""Batched CIFAR-style augmentation: zero-pad, random crop back to size, random horizontal flip.

``crop_flip`` is the deterministic core (offsets and flips given); ``random_crop_flip`` draws
them from a ``torch.Generator``. Both work on a whole batch with one ``torch.gather``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_flip(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor, padding: int
) -> torch.Tensor:
    """Window ``(top, left)`` of each image zero-padded by ``padding``, mirrored where ``flip``.

    ``images`` is (B, C, H, W); ``top``/``left`` are (B,) ints in [0, 2*padding]; ``flip`` is
    (B,) bool. Output has the shape and dtype of ``images``.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    batch, channels, height, width = images.shape
    for label, offsets in (("top", top), ("left", left)):
        if offsets.shape != (batch,) or (batch and not 0 <= int(offsets.min()) <= int(offsets.max()) <= 2 * padding):
            raise ValueError(f"{label} must hold {batch} offsets in [0, {2 * padding}], got {offsets.tolist()}")
    padded = F.pad(images, (padding, padding, padding, padding)) if padding else images
    padded_width = width + 2 * padding
    rows = top.view(-1, 1) + torch.arange(height)
    cols = torch.arange(width).expand(batch, width)
    cols = torch.where(flip.view(-1, 1), width - 1 - cols, cols) + left.view(-1, 1)
    # One gather over the flattened padded images (several times faster than 3-index indexing).
    flat = (rows.view(batch, height, 1) * padded_width + cols.view(batch, 1, width)).view(batch, 1, -1)
    out = torch.gather(padded.reshape(batch, channels, -1), 2, flat.expand(batch, channels, height * width))
    return out.view(batch, channels, height, width)


def random_crop_flip(
    images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random pad-and-crop (offsets uniform in [0, 2*padding]) and flip (p = 0.5) per image."""
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if padding == 0 and not flip:
        return images
    top, left, mirror = draw_crop_flip(images.shape[0], padding, flip, generator)
    return crop_flip(images, top, left, mirror, padding)


def draw_crop_flip(batch: int, padding: int, flip: bool, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The random (top, left, flip) of :func:`random_crop_flip` for ``batch`` images (nothing is
    drawn when there is nothing to do, so the generator's stream is the same as there)."""
    if padding == 0 and not flip:
        zeros = torch.zeros(batch, dtype=torch.long)
        return zeros, zeros.clone(), torch.zeros(batch, dtype=torch.bool)
    top = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)
    mirror = torch.rand(batch, generator=generator) < 0.5 if flip else torch.zeros(batch, dtype=torch.bool)
    return top, left, mirror
