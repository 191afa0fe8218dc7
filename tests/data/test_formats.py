"""Readers for the real on-disk formats: IDX (gz/raw), CIFAR pickle batches, image folders."""
from __future__ import annotations

import dataclasses
import io
import os
import pickle
import re
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsetime.data import (
    CropFlip,
    DatasetNotFoundError,
    ImageFolderDataset,
    batch_iterator,
    build_datasets,
    catalog,
)
from sparsetime.data.cifar import read_cifar_batch
from sparsetime.data.idx import read_idx

from data_files import make_image_folder, write_cifar10, write_idx, write_mnist_like, write_png  # noqa: E402

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No environment variable, an empty cache, no system locations: only what the test writes."""
    monkeypatch.delenv("SPARSETIME_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name, info in list(catalog.CATALOG.items()):
        monkeypatch.setitem(catalog.CATALOG, name, dataclasses.replace(info, system_dirs=()))


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name,mean,std", [("mnist", 0.1307, 0.3081), ("fashion_mnist", 0.2860, 0.3530)])
def test_idx_dataset_values_equal_what_was_written(tmp_path, gz, name, mean, std):
    arrays = write_mnist_like(tmp_path / name, np.random.default_rng(1), gz)
    splits = build_datasets(name, data_dir=tmp_path, download=False)
    assert (len(splits.train), len(splits.test)) == (7, 3)
    assert splits.validation is None and splits.num_classes == 10 and splits.input_shape == (1, 5, 6)
    for dataset, prefix in ((splits.train, "train"), (splits.test, "t10k")):
        images, labels = arrays[f"{prefix}-images-idx3-ubyte"], arrays[f"{prefix}-labels-idx1-ubyte"]
        for k in range(len(labels)):
            x, y = dataset[k]
            expected = (images[k].astype(np.float64) / 255 - mean) / std
            assert x.dtype == torch.float32 and x.shape == (1, 5, 6)
            np.testing.assert_allclose(x[0].numpy(), expected, rtol=0, atol=1e-5)
            assert y == int(labels[k]) and isinstance(y, int)


def test_idx_multibyte_big_endian(tmp_path):
    values = np.array([[-300, 2], [7, 32000]], dtype=np.int16)
    write_idx(tmp_path / "a", values, code=0x0B)
    got = read_idx(tmp_path / "a")
    assert got.dtype == np.int16 and got.tolist() == values.tolist()
    floats = np.array([1.5, -2.25], dtype=np.float32)
    write_idx(tmp_path / "f", floats, code=0x0D, gz=True)
    assert read_idx(tmp_path / "f.gz").tolist() == [1.5, -2.25]


def test_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"\x00\x00")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x00\x00")
    with pytest.raises(ValueError, match=r"shape \(5,\).*but 2 bytes follow"):
        read_idx(tmp_path / "short")
    (tmp_path / "type").write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="unknown IDX type code 0x07; allowed: 0x08"):
        read_idx(tmp_path / "type")


def test_idx_labels_out_of_range_rejected(tmp_path):
    arrays = write_mnist_like(tmp_path, np.random.default_rng(2), gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full_like(arrays["train-labels-idx1-ubyte"], 12))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        build_datasets("mnist", data_dir=tmp_path, download=False)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_pixels_and_labels(tmp_path, protocol):
    written = write_cifar10(tmp_path / "cifar-10-batches-py", np.random.default_rng(3), protocol=protocol)
    splits = build_datasets("cifar10", data_dir=tmp_path, download=False, augment=False)
    assert (len(splits.train), len(splits.test), splits.num_classes) == (10, 2, 10)
    assert splits.input_shape == (3, 32, 32)
    train_data = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_labels = [label for i in range(1, 6) for label in written[f"data_batch_{i}"][1]]
    mean, std = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
    rng = np.random.default_rng(0)
    for _ in range(50):  # pixel (k, c, r, q) sits at data[k, c*1024 + r*32 + q]
        k, c, r, q = rng.integers(0, 10), rng.integers(0, 3), rng.integers(0, 32), rng.integers(0, 32)
        assert splits.train.images[k, c, r, q] == train_data[k, c * 1024 + r * 32 + q]
        x, y = splits.train[k]
        expected = (train_data[k, c * 1024 + r * 32 + q] / 255 - mean[c]) / std[c]
        assert abs(x[c, r, q].item() - expected) < 1e-5 and y == train_labels[k]
    assert splits.test.labels.tolist() == written["test_batch"][1]


def test_cifar100_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(4)
    fine = {"train": [99, 0, 57], "test": [12, 3]}
    for name, labels in fine.items():
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        batch = {b"data": data, b"fine_labels": labels, b"coarse_labels": [19] * len(labels)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    splits = build_datasets("cifar100", data_dir=tmp_path, download=False)
    assert splits.num_classes == 100
    assert splits.train.labels.tolist() == [99, 0, 57] and splits.test.labels.tolist() == [12, 3]


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` opcodes, as in the published CIFAR files."""

    dispatch = dict(pickle._Pickler.dispatch)  # noqa: RUF012

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def test_cifar_batch_in_python2_pickle_format(tmp_path):
    data = np.random.default_rng(9).integers(0, 256, (3, 3072), dtype=np.uint8)
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump({b"batch_label": b"x", b"data": data, b"labels": [7, 0, 9]})
    raw = buffer.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")  # numpy 1 name
    assert b"_codecs" not in raw and pickle.SHORT_BINSTRING in raw
    (tmp_path / "batch").write_bytes(raw)
    images, labels = read_cifar_batch(tmp_path / "batch")
    assert np.array_equal(images.reshape(3, 3072), data) and labels.tolist() == [7, 0, 9]


class _Exploit:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_cifar_reader_refuses_code_in_pickles(tmp_path):
    target = tmp_path / "pwned"
    (tmp_path / "batch").write_bytes(pickle.dumps({b"data": _Exploit(str(target)), b"labels": [0]}))
    with pytest.raises(ValueError, match=r"refusing to load (posix|os)\.mkdir"):
        read_cifar_batch(tmp_path / "batch")
    assert not target.exists()


def test_cifar_validation_split_is_unaugmented_and_disjoint(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py", np.random.default_rng(5), per_batch=4)
    full = build_datasets("cifar10", data_dir=tmp_path, download=False, augment=False).train
    splits = build_datasets("cifar10", data_dir=tmp_path, download=False, validation_size=0.25, seed=3)
    assert (len(splits.train), len(splits.validation)) == (15, 5)
    assert splits.train.augmentation == CropFlip(4, True) and splits.validation.augmentation is None
    rows = {bytes(img.flatten().tolist()) for img in full.images}
    train_rows = [bytes(img.flatten().tolist()) for img in splits.train.images]
    val_rows = [bytes(img.flatten().tolist()) for img in splits.validation.images]
    assert not set(train_rows) & set(val_rows) and set(train_rows) | set(val_rows) == rows
    for k in range(len(splits.validation)):  # unaugmented: same every call, equal to the plain image
        a, _ = splits.validation[k]
        b, _ = splits.validation[k]
        plain = full.normalize(splits.validation.images[k : k + 1])[0]
        assert torch.equal(a, b) and torch.equal(a, plain)


def test_image_folder_classes_labels_and_exact_eval_pixels(tmp_path):
    pytest.importorskip("PIL")
    images = make_image_folder(tmp_path, np.random.default_rng(6))
    splits = build_datasets("imagefolder", data_dir=tmp_path, image_size=8, resize_size=8)
    assert splits.num_classes == 2 and splits.input_shape == (3, 8, 8)
    assert isinstance(splits.test, ImageFolderDataset) and splits.test.classes == ["cat", "dog"]
    assert [label for _, label in splits.train.samples] == [0, 0, 0, 1, 1]
    assert len(splits.train) == 5 and len(splits.test) == 2 and splits.validation is None
    for k, (path, label) in enumerate(splits.test.samples):
        x, y = splits.test[k]
        expected = (images[path] / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), expected, atol=1e-5)
        assert y == label == (0 if path.parent.name == "cat" else 1)
    x, _ = splits.train[0]
    assert x.shape == (3, 8, 8) and torch.isfinite(x).all()


def test_image_folder_resizes_constant_images_exactly(tmp_path):
    """Crops and bilinear resizes of a one-colour image keep that colour: checks both transforms."""
    pytest.importorskip("PIL")
    colour = np.array([200, 10, 90], dtype=np.uint8)
    write_png(tmp_path / "train" / "a" / "0.png", np.broadcast_to(colour, (30, 17, 3)).copy())
    write_png(tmp_path / "val" / "a" / "0.png", np.broadcast_to(colour, (12, 16, 3)).copy())
    splits = build_datasets("imagefolder", data_dir=tmp_path, image_size=8)
    expected = torch.tensor((colour / 255.0 - IMAGENET_MEAN) / IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    for dataset in (splits.train, splits.test):
        x, _ = dataset[0]
        assert x.shape == (3, 8, 8)
        assert (x - expected).abs().max().item() < 1e-4


def test_image_folder_batches_deterministic_under_seed(tmp_path):
    pytest.importorskip("PIL")
    make_image_folder(tmp_path, np.random.default_rng(7))
    splits = build_datasets("imagefolder", data_dir=tmp_path, image_size=6, validation_size=1, seed=0)
    assert len(splits.train) == 4 and len(splits.validation) == 1 and not splits.validation.train

    def epoch(seed):
        return list(batch_iterator(splits.train, 3, True, torch.Generator().manual_seed(seed)))

    first, again, other = epoch(11), epoch(11), epoch(12)
    assert [x.shape for x, _ in first] == [(3, 3, 6, 6), (1, 3, 6, 6)]
    assert all(y.dtype == torch.int64 for _, y in first)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other))


def test_image_folder_errors(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    with pytest.raises(DatasetNotFoundError, match="data_dir= pointing at a folder with train/ and val/"):
        build_datasets("imagefolder")
    with pytest.raises(DatasetNotFoundError, match=re.escape(f"{tmp_path} (data_dir argument)")):
        build_datasets("imagefolder", data_dir=tmp_path)
    make_image_folder(tmp_path, np.random.default_rng(8))
    write_png(tmp_path / "val" / "bird" / "0.png", np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"classes \['bird'\] that the training split lacks"):
        build_datasets("imagefolder", data_dir=tmp_path, image_size=8)
    (tmp_path / "val" / "bird" / "0.png").unlink()
    (tmp_path / "val" / "bird").rmdir()
    with pytest.raises(ValueError, match="resize_size must be an int >= image_size"):
        build_datasets("imagefolder", data_dir=tmp_path, image_size=8, resize_size=4)
    monkeypatch.setitem(sys.modules, "PIL", None)  # Pillow not installed: said before anything is trained
    with pytest.raises(ImportError, match=r"sparsetime\[images\]"):
        build_datasets("imagefolder", data_dir=tmp_path, image_size=8)


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.setitem(
        catalog.CATALOG,
        "fashion_mnist",
        dataclasses.replace(catalog.CATALOG["fashion_mnist"], system_dirs=(str(FASHION_DIR),)),
    )
    splits = build_datasets("fashion_mnist", download=False)
    assert (len(splits.train), len(splits.test), splits.num_classes) == (60000, 10000, 10)
    assert splits.input_shape == (1, 28, 28)
    assert torch.bincount(splits.train.labels).tolist() == [6000] * 10
    assert torch.bincount(splits.test.labels).tolist() == [1000] * 10
    pixels = splits.train.images.to(torch.float64) / 255  # the normalisation constants fit the data
    assert abs(pixels.mean().item() - 0.2860) < 1e-3 and abs(pixels.std().item() - 0.3530) < 1e-3
