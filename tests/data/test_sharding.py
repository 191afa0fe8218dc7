"""Sharded batches for distributed training: the ranks' slices put together are exactly the
batches of one process (order and augmentation), and every rank runs the same number of steps."""
import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from sparsetime.data.batches import batch_iterator, num_batches, shard_slice
from sparsetime.data.in_memory import CropFlip, InMemoryImageDataset


def _images(n=25, augment=True):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 6, 6), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 4
    return InMemoryImageDataset(images, labels, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25),
                                CropFlip(padding=2, flip=True) if augment else None)


def _epoch(dataset, batch, shard=None, seed=3):
    return list(batch_iterator(dataset, batch, shuffle=True, generator=torch.Generator().manual_seed(seed),
                               shard=shard))


@pytest.mark.parametrize("augment", [True, False])
@pytest.mark.parametrize("world", [2, 3])
def test_rank_slices_reassemble_the_single_process_batches(augment, world):
    data = _images(augment=augment)
    whole = _epoch(data, 10)
    parts = [_epoch(data, 10, (r, world)) for r in range(world)]
    assert all(len(p) == len(whole) == num_batches(25, 10, world_size=world) == 3 for p in parts)
    for i, (x, y) in enumerate(whole):
        xs = torch.cat([p[i][0] for p in parts])
        ys = torch.cat([p[i][1] for p in parts])
        assert torch.equal(xs, x) and torch.equal(ys, y)
        sizes = [p[i][1].numel() for p in parts]
        assert max(sizes) - min(sizes) <= 1


def test_a_last_global_batch_smaller_than_the_world_is_dropped_on_every_rank():
    data = Subset(_images(21), list(range(21)))
    assert num_batches(21, 10, world_size=2) == 2 and num_batches(21, 10) == 3
    assert [len(_epoch(data, 10, (r, 2))) for r in (0, 1)] == [2, 2]


def test_generic_datasets_are_sliced_too():
    data = TensorDataset(torch.arange(12).float().unsqueeze(1), torch.arange(12))
    whole = _epoch(data, 4)
    parts = [_epoch(data, 4, (r, 2)) for r in range(2)]
    for i, (_, y) in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][i][1], parts[1][i][1]]), y)


def test_shard_slice_by_hand_and_bad_shards():
    assert [shard_slice(5, r, 2) for r in range(2)] == [slice(0, 3), slice(3, 5)]
    assert [shard_slice(7, r, 3) for r in range(3)] == [slice(0, 3), slice(3, 5), slice(5, 7)]
    with pytest.raises(ValueError, match="0 <= rank < world_size, got \\(2, 2\\)"):
        _epoch(_images(), 4, (2, 2))
