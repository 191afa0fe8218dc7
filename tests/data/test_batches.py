"""Augmentation, validation split, the fast batch iterator and the synthetic dataset."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from sparsetime.data import CropFlip, InMemoryImageDataset, batch_iterator, build_datasets, num_batches
from sparsetime.data.augment import crop_flip, random_crop_flip
from sparsetime.data.split import split_indices


def reference_crop_flip(images: np.ndarray, top, left, flip, padding: int) -> np.ndarray:
    """Loop implementation: numpy zero pad, slice the window, mirror the columns."""
    out = np.empty_like(images)
    height, width = images.shape[2:]
    for b in range(images.shape[0]):
        padded = np.pad(images[b], ((0, 0), (padding, padding), (padding, padding)))
        window = padded[:, top[b]:top[b] + height, left[b]:left[b] + width]
        out[b] = window[:, :, ::-1] if flip[b] else window
    return out


def test_crop_flip_matches_loop_reference():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 2, 5, 7), dtype=np.uint8)
    top, left = rng.integers(0, 5, 6), rng.integers(0, 5, 6)
    flip = rng.random(6) < 0.5
    got = crop_flip(torch.from_numpy(images), torch.from_numpy(top), torch.from_numpy(left),
                    torch.from_numpy(flip), padding=2)
    assert got.dtype == torch.uint8 and got.shape == images.shape
    assert np.array_equal(got.numpy(), reference_crop_flip(images, top, left, flip, 2))


def test_crop_flip_rejects_offsets_outside_the_padding():
    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    no_flip = torch.zeros(2, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"left must hold 2 offsets in \[0, 2\]"):
        crop_flip(images, torch.tensor([0, 1]), torch.tensor([0, 3]), no_flip, padding=1)


def test_centred_crop_without_flip_is_identity():
    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    centre = torch.full((3,), 4)
    assert torch.equal(crop_flip(images, centre, centre, torch.zeros(3, dtype=torch.bool), 4), images)


def matches_some_window(out: np.ndarray, image: np.ndarray, padding: int) -> bool:
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            for flip in (False, True):
                if np.array_equal(out, reference_crop_flip(image[None], [top], [left], [flip], padding)[0]):
                    return True
    return False


def test_random_crop_flip_properties_and_determinism():
    images = torch.randint(0, 256, (16, 3, 6, 6), dtype=torch.uint8)
    out = random_crop_flip(images, 2, True, torch.Generator().manual_seed(5))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert all(matches_some_window(out[b].numpy(), images[b].numpy(), 2) for b in range(16))
    again = random_crop_flip(images, 2, True, torch.Generator().manual_seed(5))
    other = random_crop_flip(images, 2, True, torch.Generator().manual_seed(6))
    assert torch.equal(out, again) and not torch.equal(out, other)


def test_flip_only_is_exact_mirror_or_identity():
    images = torch.randint(0, 256, (64, 1, 4, 5), dtype=torch.uint8)
    out = random_crop_flip(images, 0, True, torch.Generator().manual_seed(0))
    mirrored = [torch.equal(out[b], images[b].flip(-1)) for b in range(64)]
    same = [torch.equal(out[b], images[b]) for b in range(64)]
    assert all(m or s for m, s in zip(mirrored, same))
    assert 16 < sum(mirrored) < 48  # p = 0.5
    assert random_crop_flip(images, 0, False) is images


@pytest.mark.parametrize("size,expected", [(10, 10), (0.25, 25), (0, 0), (0.0, 0)])
def test_split_sizes_disjoint_and_seeded(size, expected):
    train, val = split_indices(100, size, seed=1)
    assert len(val) == expected and len(train) == 100 - expected
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(100))
    train2, val2 = split_indices(100, size, seed=1)
    assert torch.equal(val, val2) and torch.equal(train, train2)
    if expected:
        assert not torch.equal(val, split_indices(100, size, seed=2)[1])


@pytest.mark.parametrize("size", [-1, 100, 1.0, 1.5, -0.1, True, "5", None])
def test_split_rejects_bad_sizes(size):
    with pytest.raises(ValueError, match="validation_size"):
        split_indices(100, size, seed=0)


def numbered_dataset(n: int, augmentation: CropFlip | None = None) -> InMemoryImageDataset:
    """Image i is constant i (so a batch row tells which sample it is); label i % 3."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 2, 4, 4).contiguous()
    return InMemoryImageDataset(images, torch.arange(n) % 3, mean=[0.0, 0.5], std=[1.0, 0.25],
                                augmentation=augmentation)


def sample_ids(x: torch.Tensor) -> list[int]:
    return (x[:, 0, 1, 1] * 255).round().long().tolist()  # channel 0: x = i / 255


def test_batches_in_order_equal_per_sample_items():
    dataset = numbered_dataset(10)
    batches = list(batch_iterator(dataset, 4, shuffle=False))
    assert [len(y) for _, y in batches] == [4, 4, 2] and num_batches(10, 4) == 3
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    for i in range(10):
        xi, yi = dataset[i]
        assert torch.equal(x[i], xi) and y[i].item() == yi == i % 3
        expected = torch.tensor([i / 255, (i / 255 - 0.5) / 0.25]).view(2, 1, 1).expand(2, 4, 4)
        assert (x[i] - expected).abs().max() < 1e-6
    assert y.dtype == torch.int64 and x.dtype == torch.float32


def test_shuffled_epoch_covers_each_sample_once_and_drop_last():
    dataset = numbered_dataset(10)
    ids = [i for x, _ in batch_iterator(dataset, 3, True, torch.Generator().manual_seed(0)) for i in sample_ids(x)]
    assert sorted(ids) == list(range(10)) and ids != list(range(10))
    sizes = [len(y) for _, y in batch_iterator(dataset, 3, True, torch.Generator().manual_seed(0), drop_last=True)]
    assert sizes == [3, 3, 3] and num_batches(10, 3, drop_last=True) == 3


def test_augmented_batches_deterministic_under_seed():
    images = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8)
    dataset = InMemoryImageDataset(images, torch.zeros(20, dtype=torch.int64), [0.5] * 3, [0.5] * 3, CropFlip(2, True))

    def epoch(seed):
        return [x for x, _ in batch_iterator(dataset, 8, True, torch.Generator().manual_seed(seed))]

    first, again, other = epoch(3), epoch(3), epoch(4)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    assert all(x.shape[1:] == (3, 8, 8) for x in first)


def test_augmented_batch_rows_are_windows_of_their_images():
    images = torch.randint(1, 256, (6, 1, 5, 5), dtype=torch.uint8)
    dataset = InMemoryImageDataset(images, torch.arange(6), [0.0], [1.0], CropFlip(1, True))
    x, y = dataset.batch(torch.arange(6), torch.Generator().manual_seed(0))
    raw = (x * 255).round().to(torch.uint8)
    assert all(matches_some_window(raw[b].numpy(), images[y[b]].numpy(), 1) for b in range(6))


def test_subset_of_in_memory_dataset_uses_fast_path():
    dataset = numbered_dataset(12)
    view = Subset(Subset(dataset, [1, 3, 5, 7, 9, 11]), [0, 2, 4])  # samples 1, 5, 9
    ids = [i for x, _ in batch_iterator(view, 2, False) for i in sample_ids(x)]
    assert ids == [1, 5, 9]


def test_generic_dataset_falls_back_to_dataloader():
    data = TensorDataset(torch.arange(7.0).view(7, 1), torch.arange(7))
    batches = list(batch_iterator(data, 3, True, torch.Generator().manual_seed(1)))
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == list(range(7))
    again = list(batch_iterator(data, 3, True, torch.Generator().manual_seed(1)))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again))


def test_batch_iterator_rejects_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        next(batch_iterator(numbered_dataset(3), 0, False))


def test_synthetic_is_deterministic_and_learnable():
    splits = build_datasets("synthetic", train_size=200, test_size=100, shape=(2, 4, 4), num_classes=5)
    again = build_datasets("synthetic", train_size=200, test_size=100, shape=(2, 4, 4), num_classes=5)
    assert torch.equal(splits.train.images, again.train.images) and torch.equal(splits.test.labels, again.test.labels)
    assert splits.num_classes == 5 and splits.input_shape == (2, 4, 4)
    assert torch.bincount(splits.train.labels).tolist() == [40] * 5
    other = build_datasets("synthetic", train_size=200, test_size=100, shape=(2, 4, 4), num_classes=5, data_seed=1)
    assert not torch.equal(splits.train.images, other.train.images)
    # A nearest-class-mean classifier fit on train separates the test set: the data carry signal.
    x_train = splits.train.images.flatten(1).double()
    means = torch.stack([x_train[splits.train.labels == c].mean(0) for c in range(5)])
    x_test = splits.test.images.flatten(1).double()
    predicted = torch.cdist(x_test, means).argmin(1)
    assert (predicted == splits.test.labels).double().mean() > 0.9
    # Normalised with the training set's own statistics.
    x = torch.stack([splits.train[i][0] for i in range(200)])
    assert x.mean().abs() < 0.05 and (x.transpose(0, 1).flatten(1).std(1) - 1).abs().max() < 0.05


def test_synthetic_validation_split_and_bad_options():
    splits = build_datasets("synthetic", validation_size=0.25, seed=0)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (384, 128, 128)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['colour'\]; allowed: \['data_seed'"):
        build_datasets("synthetic", colour=True)
    with pytest.raises(ValueError, match="allowed: none"):
        build_datasets("mnist", image_size=8)
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        build_datasets("synthetic", num_classes=1)
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; available datasets: cifar10"):
        build_datasets("imagenet")
