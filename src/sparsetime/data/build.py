"""``build_datasets``: named dataset -> train / validation / test splits ready for training."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from .class_split import check_classes, keep_classes
from .catalog import CATALOG, DatasetInfo, dataset_info
from .cifar import read_cifar_split
from .idx import find_idx_file, read_idx
from .image_folder import ImageFolderDataset, scan_split
from .image_transforms import check_images
from .in_memory import CropFlip, InMemoryImageDataset
from .locate import ensure_dataset
from .split import split_indices
from .synthetic import make_synthetic

logger = logging.getLogger(__name__)


@dataclass
class DatasetSplits:
    """The datasets of one run; each yields (float tensor C x H x W, int label)."""

    train: Dataset
    validation: Dataset | None
    test: Dataset
    num_classes: int
    input_shape: tuple[int, ...]


def available_datasets() -> list[str]:
    """Names accepted by ``build_datasets``, sorted."""
    return sorted(CATALOG)


_OPTIONS: dict[str, dict[str, Any]] = {
    "idx": {},
    "cifar": {},
    "imagefolder": {"image_size": 224, "resize_size": None},
    "synthetic": {"train_size": 512, "test_size": 128, "shape": (1, 8, 8), "num_classes": 4, "noise": 0.3,
                  "data_seed": 0},
}


def build_datasets(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    validation_size: int | float = 0,
    seed: int = 0,
    augment: bool = True,
    download: bool = True,
    **options: Any,
) -> DatasetSplits:
    """Load dataset ``name`` and hold out ``validation_size`` training samples (seeded, unaugmented).

    ``augment`` turns on the dataset's standard training augmentation (CIFAR: pad-4 crop and
    flip; image folders: random-resized crop and flip; none for MNIST-like data). Options:
    imagefolder takes ``image_size`` and ``resize_size``; synthetic takes ``train_size``,
    ``test_size``, ``shape``, ``num_classes``, ``noise`` and ``data_seed``; every in-memory dataset
    takes ``classes`` (keep those classes, relabelled 0..n-1: :mod:`.class_split`).
    """
    info = dataset_info(name)
    classes = options.pop("classes", None) if info.kind != "imagefolder" else None
    allowed = _OPTIONS[info.kind]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"dataset {name!r} got unknown option(s) {unknown}; allowed: {sorted(allowed) or 'none'}")
    settings = {**allowed, **options}
    if info.kind == "imagefolder":
        return _image_folder(info, data_dir, validation_size, seed, augment, **settings)
    if info.kind == "synthetic":
        train, test = make_synthetic(**settings)
    elif info.kind == "idx":
        train, test = _idx(info, ensure_dataset(name, data_dir, download))
    else:
        train, test = _cifar(info, ensure_dataset(name, data_dir, download))
    num_classes = settings.get("num_classes", info.num_classes)
    if classes is not None:
        classes = check_classes(classes, num_classes)
        train, test, num_classes = keep_classes(train, classes), keep_classes(test, classes), len(classes)
    augmentation = CropFlip(info.crop_padding, info.flip) if augment and (info.crop_padding or info.flip) else None
    train_idx, val_idx = split_indices(len(train), validation_size, seed)
    validation = None
    if len(val_idx):
        validation = train.subset(val_idx, augmentation=None)
        train = train.subset(train_idx, augmentation)
    else:
        train.augmentation = augmentation
    logger.info("dataset %s: %d train, %d validation, %d test samples", name, len(train),
                len(val_idx), len(test))
    return DatasetSplits(train, validation, test, num_classes, train.input_shape)


def _in_memory(info: DatasetInfo, images: Any, labels: Any) -> InMemoryImageDataset:
    labels_t = torch.as_tensor(labels, dtype=torch.int64)
    if labels_t.numel() and (int(labels_t.min()) < 0 or int(labels_t.max()) >= info.num_classes):
        raise ValueError(
            f"{info.name}: labels must lie in [0, {info.num_classes}), found "
            f"[{int(labels_t.min())}, {int(labels_t.max())}]"
        )
    return InMemoryImageDataset(torch.as_tensor(images), labels_t, info.mean, info.std)


def _idx(info: DatasetInfo, folder: Path) -> tuple[InMemoryImageDataset, InMemoryImageDataset]:
    splits = []
    for prefix in ("train", "t10k"):
        images = read_idx(find_idx_file(folder, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(find_idx_file(folder, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{folder}: {prefix} images {images.shape} and labels {labels.shape} do not match "
                "(expected (N, H, W) and (N,))"
            )
        if images.dtype.kind != "u" or images.dtype.itemsize != 1:
            raise ValueError(f"{folder}: {prefix} images must be unsigned bytes, found {images.dtype}")
        splits.append(_in_memory(info, images[:, None], labels))
    return splits[0], splits[1]


def _cifar(info: DatasetInfo, folder: Path) -> tuple[InMemoryImageDataset, InMemoryImageDataset]:
    train_files, test_files = list(info.required[:-1]), list(info.required[-1:])
    train = read_cifar_split(folder, train_files, info.label_key)
    test = read_cifar_split(folder, test_files, info.label_key)
    return _in_memory(info, *train), _in_memory(info, *test)


def _image_folder(
    info: DatasetInfo,
    data_dir: str | os.PathLike[str] | None,
    validation_size: int | float,
    seed: int,
    augment: bool,
    image_size: int,
    resize_size: int | None,
) -> DatasetSplits:
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    resize_size = round(image_size / 0.875) if resize_size is None else resize_size
    if not isinstance(resize_size, int) or resize_size < image_size:
        raise ValueError(f"resize_size must be an int >= image_size ({image_size}), got {resize_size!r}")
    root = ensure_dataset(info.name, data_dir, download=False)
    samples, classes = scan_split(root / "train")
    test_samples, _ = scan_split(root / "val", classes)
    train_idx, val_idx = split_indices(len(samples), validation_size, seed)
    # the evaluation images are read only after the first epoch: check them now (training images
    # fail, with the file named, as soon as they are loaded)
    check_images([p for p, _ in test_samples] + [samples[i][0] for i in val_idx.tolist()])

    def make(chosen: list[tuple[Path, int]], train: bool) -> ImageFolderDataset:
        return ImageFolderDataset(chosen, classes, train, image_size, resize_size, info.mean, info.std)

    train = make([samples[i] for i in train_idx.tolist()], augment)
    validation = make([samples[i] for i in val_idx.tolist()], False) if len(val_idx) else None
    return DatasetSplits(train, validation, make(test_samples, False), len(classes), train.input_shape)
