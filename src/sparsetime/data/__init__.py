"""Datasets for sparse training runs.

``build_datasets(name, ...)`` returns train / validation / test datasets that yield
(float C x H x W tensor, int label); ``batch_iterator`` batches them quickly and
deterministically; ``locate_dataset`` reports where a dataset is found without downloading.
"""
from __future__ import annotations

from .batches import batch_iterator, num_batches
from .build import DatasetSplits, available_datasets, build_datasets
from .errors import ChecksumError, DatasetNotFoundError
from .image_folder import ImageFolderDataset
from .in_memory import CropFlip, InMemoryImageDataset
from .locate import ENV_VAR, locate_dataset

__all__ = [
    "ENV_VAR",
    "ChecksumError",
    "CropFlip",
    "DatasetNotFoundError",
    "DatasetSplits",
    "ImageFolderDataset",
    "InMemoryImageDataset",
    "available_datasets",
    "batch_iterator",
    "build_datasets",
    "locate_dataset",
    "num_batches",
]
