"""Datasets stored as ``root/<split>/<class>/<image>`` files, decoded lazily with Pillow."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .image_transforms import decode_image, eval_transform, train_transform

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")


def scan_split(folder: Path, classes: Sequence[str] | None = None) -> tuple[list[tuple[Path, int]], list[str]]:
    """(samples, classes) of one split; classes are sorted sub-folder names unless given."""
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder split {folder} does not exist")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if classes is None:
        classes = found
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise ValueError(f"{folder} has classes {extra} that the training split lacks; allowed: {list(classes)}")
    index = {name: i for i, name in enumerate(classes)}
    samples = [
        (path, index[name])
        for name in found
        for path in sorted((folder / name).rglob("*"))
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS
    ]
    if not samples:
        raise ValueError(f"{folder} holds no images with extensions {', '.join(IMAGE_EXTENSIONS)}")
    return samples, list(classes)


class ImageFolderDataset(Dataset):
    """(float 3xSxS normalised image, int label); training transform if ``train`` else eval."""

    def __init__(
        self,
        samples: Sequence[tuple[Path, int]],
        classes: Sequence[str],
        train: bool,
        image_size: int,
        resize_size: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        self.samples = list(samples)
        self.classes = list(classes)
        self.train = train
        self.image_size = image_size
        self.resize_size = resize_size
        self._mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(3, image_size, image_size)."""
        return (3, self.image_size, self.image_size)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
        """Sample ``index``, with training randomness drawn from ``generator`` (global RNG if None)."""
        path, label = self.samples[index]
        image = decode_image(path)
        if self.train:
            out = train_transform(image, self.image_size, generator)
        else:
            out = eval_transform(image, self.resize_size, self.image_size)
        return (out / 255.0 - self._mean) / self._std, label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.load(index)
