"""Fast mini-batch iteration for the trainer.

In-memory datasets (and ``Subset`` views of them) are batched directly: one permutation, then
per batch one gather, one augmentation and one normalisation over the whole batch; all
randomness comes from the given generator, so the same seed gives the same batches. Image
folders go through a ``DataLoader`` whose samples carry seeds drawn from the generator, so
they are deterministic too, with or without worker processes. Other datasets use a plain
``DataLoader`` (order from the generator).
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .image_folder import ImageFolderDataset
from .in_memory import InMemoryImageDataset


def num_batches(num_samples: int, batch_size: int, drop_last: bool = False, world_size: int = 1) -> int:
    """How many batches ``batch_iterator`` yields for ``num_samples`` samples.

    With ``world_size`` ranks, ``batch_size`` is the global batch; a last global batch too small
    to give every rank a sample is dropped (every rank must run the same number of steps).
    """
    full, rest = divmod(num_samples, batch_size)
    return full + (1 if rest and not drop_last and rest >= world_size else 0)


def shard_slice(size: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s part of a global batch of ``size``: contiguous, sizes differing by at most one."""
    base, extra = divmod(size, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def _unwrap(dataset: Dataset) -> tuple[Dataset, torch.Tensor | None]:
    """The dataset under nested ``Subset`` views, with the composed indices (None if no view)."""
    indices: torch.Tensor | None = None
    while isinstance(dataset, Subset):
        step = torch.as_tensor(list(dataset.indices), dtype=torch.int64)
        indices = step if indices is None else step[indices]
        dataset = dataset.dataset
    return dataset, indices


def _order(n: int, shuffle: bool, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randperm(n, generator=generator) if shuffle else torch.arange(n)


class _SeededSamples(Dataset):
    """Image-folder view whose keys are (index, seed): each sample gets its own generator."""

    def __init__(self, dataset: ImageFolderDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = key
        return self.dataset.load(index, torch.Generator().manual_seed(seed))


def batch_iterator(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    num_workers: int = 0,
    shard: tuple[int, int] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches over ``dataset`` once (one epoch).

    ``generator`` supplies the order and the augmentation randomness (torch's global RNG if
    None). ``num_workers`` only matters for datasets served through a DataLoader.
    ``shard=(rank, world_size)``: ``batch_size`` is the global batch and each batch yielded is
    rank ``rank``'s slice of it (:func:`shard_slice`). Every rank draws the same order and
    augmentation, so the ranks together see exactly the batches of one process; a last global
    batch with fewer samples than ranks is dropped.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    rank, world = shard if shard is not None else (0, 1)
    if not 0 <= rank < world:
        raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard!r}")
    part = (lambda size: shard_slice(size, rank, world)) if shard is not None else (lambda size: None)
    base, indices = _unwrap(dataset)
    if isinstance(base, InMemoryImageDataset):
        n = len(base) if indices is None else len(indices)
        order = _order(n, shuffle, generator)
        if indices is not None:
            order = indices[order]
        for start in range(0, n, batch_size):
            chosen = order[start:start + batch_size]
            if (drop_last and len(chosen) < batch_size) or len(chosen) < world:
                break
            yield base.batch(chosen, generator, part(len(chosen)))
        return
    if isinstance(dataset, ImageFolderDataset):
        n = len(dataset)
        order = _order(n, shuffle, generator).tolist()
        seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()
        keys = list(zip(order, seeds))
        batches = [keys[i:i + batch_size] for i in range(0, n, batch_size)]
        if batches and ((drop_last and len(batches[-1]) < batch_size) or len(batches[-1]) < world):
            batches.pop()
        if shard is not None:  # each sample carries its own seed: a slice loads only this rank's share
            batches = [b[part(len(b))] for b in batches]
        loader = DataLoader(_SeededSamples(dataset), batch_sampler=batches, num_workers=num_workers)
    else:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                            drop_last=drop_last, num_workers=num_workers)
    for x, y in loader:
        if shard is not None:  # generic datasets: load the global batch, keep this rank's slice
            if len(y) < world:
                break
            cut = part(len(y))
            x, y = x[cut], y[cut]
        yield x, torch.as_tensor(y, dtype=torch.int64)
