"""ImageNet-style transforms in plain torch (no torchvision), on (C, H, W) tensors.

Train: random-resized crop (scale 0.08-1, aspect 3/4-4/3, as torchvision) + horizontal flip.
Eval: resize the shorter side, then a centre crop. Resizing is bilinear with antialiasing.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F


def decode_image(path: Path) -> torch.Tensor:
    """RGB uint8 tensor (3, H, W) of the image file at ``path`` (needs Pillow)."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError("reading image folders needs Pillow: pip install 'sparsetime[images]'") from exc
    import numpy as np

    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as exc:  # not an image, truncated, or a decoder error
        raise ValueError(f"{path} is not a readable image ({type(exc).__name__}: {exc}); "
                         "remove or replace it") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def check_images(paths: Sequence[Path]) -> None:
    """ValueError naming the first of ``paths`` that Pillow cannot identify or verify (truncated,
    not an image), so that a bad file fails before training rather than after an epoch."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError("reading image folders needs Pillow: pip install 'sparsetime[images]'") from exc
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ValueError(f"{path} is not a readable image ({type(exc).__name__}: {exc}); remove or replace it "
                             "before training") from None


def resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Float (C, height, width) bilinear resize; returns a float copy when the size already fits."""
    if tuple(image.shape[-2:]) == (height, width):
        return image.to(torch.float32)
    out = F.interpolate(image.to(torch.float32).unsqueeze(0), size=(height, width), mode="bilinear",
                        align_corners=False, antialias=True)
    return out.squeeze(0)


def resized_crop_box(
    height: int,
    width: int,
    generator: torch.Generator | None,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop covering a ``scale`` fraction with aspect in ``ratio``.

    Ten tries as in torchvision, then a centre crop with the aspect clamped to ``ratio``.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        u = torch.rand(2, generator=generator).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[1])
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def train_transform(image: torch.Tensor, size: int, generator: torch.Generator | None) -> torch.Tensor:
    """Random-resized crop to ``size`` x ``size`` and a random horizontal flip; float output."""
    top, left, h, w = resized_crop_box(image.shape[-2], image.shape[-1], generator)
    out = resize(image[:, top:top + h, left:left + w], size, size)
    if float(torch.rand(1, generator=generator)) < 0.5:
        out = out.flip(-1)
    return out


def eval_transform(image: torch.Tensor, resize_size: int, size: int) -> torch.Tensor:
    """Resize the shorter side to ``resize_size`` (aspect kept), centre crop ``size``; float output."""
    height, width = image.shape[-2:]
    if height <= width:
        new_h, new_w = resize_size, max(1, int(resize_size * width / height))
    else:
        new_h, new_w = max(1, int(resize_size * height / width)), resize_size
    out = resize(image, new_h, new_w)
    if new_h < size or new_w < size:
        raise ValueError(f"resize size {resize_size} is smaller than crop size {size}")
    top = round((new_h - size) / 2.0)
    left = round((new_w - size) / 2.0)
    return out[:, top:top + size, left:left + size]
