"""Class subsets of a dataset, relabelled 0..n-1: disjoint tasks from one dataset (ticket transfer).

``data.options.classes: [5, 6, 7, 8, 9]`` keeps the examples of those classes in train and test,
relabelled by their position in the list, so a ticket found on classes 0-4 can be transferred to
classes 5-9 of the same data (Morcos et al. 2019, with only Fashion-MNIST offline).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .in_memory import InMemoryImageDataset


def check_classes(classes: Any, num_classes: int) -> list[int]:
    """``classes`` as a list after checking it holds distinct labels in [0, num_classes) (at least two)."""
    ok = isinstance(classes, (list, tuple)) and len(classes) >= 2 and len(set(classes)) == len(classes) and all(
        isinstance(c, int) and not isinstance(c, bool) and 0 <= c < num_classes for c in classes)
    if not ok:
        raise ValueError(f"data.options.classes = {classes!r} is invalid; allowed: a list of at least two distinct "
                         f"labels in [0, {num_classes})")
    return list(classes)


def keep_classes(dataset: InMemoryImageDataset, classes: Sequence[int]) -> InMemoryImageDataset:
    """The examples of ``classes`` only, label ``classes[i]`` becoming ``i``."""
    labels = dataset.labels
    relabel = torch.full((int(labels.max()) + 1 if labels.numel() else 1,), -1, dtype=torch.int64)
    for i, c in enumerate(classes):
        if c < relabel.numel():
            relabel[c] = i
    indices = (relabel[labels] >= 0).nonzero().squeeze(1)
    subset = dataset.subset(indices, dataset.augmentation)
    subset.labels = relabel[subset.labels]
    return subset
