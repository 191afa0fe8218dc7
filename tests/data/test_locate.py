"""Where datasets are looked for, the not-found error, and verified downloads (never from the network)."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from sparsetime.data import ChecksumError, DatasetNotFoundError, build_datasets, catalog, download, locate_dataset
from sparsetime.data.download import download_verified, extract_tar

IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.delenv("SPARSETIME_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name, info in list(catalog.CATALOG.items()):
        monkeypatch.setitem(catalog.CATALOG, name, dataclasses.replace(info, system_dirs=()))


@pytest.fixture
def no_network(monkeypatch):
    def refuse(url, destination, timeout=30.0):
        raise AssertionError(f"test tried to download {url}")

    monkeypatch.setattr(download, "fetch", refuse)


def idx_bytes(array: np.ndarray) -> bytes:
    return b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_set(folder: Path, n_train: int) -> None:
    """Four raw IDX files; the training set size tells the copies apart."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = [np.zeros((n_train, 4, 4), np.uint8), np.zeros(n_train, np.uint8),
              np.zeros((2, 4, 4), np.uint8), np.zeros(2, np.uint8)]
    for name, array in zip(IDX_NAMES, arrays):
        (folder / name).write_bytes(idx_bytes(array))


def set_system_dirs(monkeypatch, name: str, dirs: tuple[str, ...]) -> None:
    monkeypatch.setitem(catalog.CATALOG, name, dataclasses.replace(catalog.CATALOG[name], system_dirs=dirs))


def test_resolution_order_data_dir_env_system(monkeypatch, tmp_path, no_network):
    arg, env, system = tmp_path / "arg", tmp_path / "env", tmp_path / "system"
    write_idx_set(arg / "fashion-mnist", 3)
    write_idx_set(env / "FashionMNIST" / "raw", 4)
    write_idx_set(system, 5)
    monkeypatch.setenv("SPARSETIME_DATA", str(env))
    set_system_dirs(monkeypatch, "fashion_mnist", (str(system),))
    assert len(build_datasets("fashion_mnist", data_dir=arg).train) == 3
    assert locate_dataset("fashion_mnist", data_dir=arg) == arg / "fashion-mnist"
    assert len(build_datasets("fashion_mnist").train) == 4
    assert locate_dataset("fashion_mnist") == env / "FashionMNIST" / "raw"
    monkeypatch.delenv("SPARSETIME_DATA")
    assert len(build_datasets("fashion_mnist", data_dir=tmp_path / "empty").train) == 5
    assert locate_dataset("fashion_mnist") == system


def test_locate_returns_none_when_absent_and_for_synthetic(tmp_path, no_network):
    assert locate_dataset("mnist", data_dir=tmp_path) is None
    assert locate_dataset("cifar10") is None
    assert locate_dataset("synthetic") is None
    with pytest.raises(ValueError, match="available datasets: cifar10, cifar100, fashion_mnist, imagefolder, mnist"):
        locate_dataset("svhn")


def test_incomplete_folder_is_not_used(tmp_path, no_network):
    write_idx_set(tmp_path / "mnist", 3)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").unlink()
    assert locate_dataset("mnist", data_dir=tmp_path) is None


def test_not_found_error_names_every_place_and_the_remedy(monkeypatch, tmp_path, no_network):
    monkeypatch.setenv("SPARSETIME_DATA", str(tmp_path / "envroot"))
    set_system_dirs(monkeypatch, "fashion_mnist", ("/usr/share/datasets/fashion-mnist-absent",))
    with pytest.raises(DatasetNotFoundError) as caught:
        build_datasets("fashion_mnist", data_dir=tmp_path / "mine", download=False)
    assert isinstance(caught.value, FileNotFoundError)
    message = str(caught.value)
    for expected in [
        f"{tmp_path / 'mine'} (data_dir argument)",
        f"{tmp_path / 'mine' / 'fashion_mnist'} (data_dir argument)",
        f"{tmp_path / 'envroot'} ($SPARSETIME_DATA)",
        "/usr/share/datasets/fashion-mnist-absent (system location)",
        f"{tmp_path / 'cache' / 'sparsetime' / 'data'} (download cache)",
        "download: skipped (download=False)",
        "apt-get install dataset-fashion-mnist",
    ]:
        assert expected in message


def serve_idx_files(tmp_path: Path, monkeypatch, corrupt: str | None = None) -> dict[str, bytes]:
    """Put gzipped IDX files in a local 'server' folder and point the catalog at file:// URLs."""
    import gzip

    server = tmp_path / "server"
    server.mkdir()
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (6, 3, 3), dtype=np.uint8), rng.integers(0, 10, 6, dtype=np.uint8),
              rng.integers(0, 256, (2, 3, 3), dtype=np.uint8), rng.integers(0, 10, 2, dtype=np.uint8)]
    items, payloads = [], {}
    for name, array in zip(IDX_NAMES, arrays):
        payload = gzip.compress(idx_bytes(array))
        (server / f"{name}.gz").write_bytes(payload)
        md5 = hashlib.md5(payload).hexdigest()
        if name == corrupt:
            md5 = "0" * 32
        items.append(catalog.Download(server.joinpath(f"{name}.gz").as_uri(), f"{name}.gz", md5))
        payloads[name] = payload
    monkeypatch.setitem(
        catalog.CATALOG, "mnist", dataclasses.replace(catalog.CATALOG["mnist"], downloads=tuple(items))
    )
    return payloads


def test_download_from_file_url_with_checksums(tmp_path, monkeypatch):
    payloads = serve_idx_files(tmp_path, monkeypatch)
    target = tmp_path / "data"
    splits = build_datasets("mnist", data_dir=target, download=True)
    assert (len(splits.train), len(splits.test)) == (6, 2)
    folder = target / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.gz" for n in IDX_NAMES)
    assert (folder / "train-images-idx3-ubyte.gz").read_bytes() == payloads["train-images-idx3-ubyte"]
    # Second call finds the files and does not fetch again.
    monkeypatch.setattr(download, "fetch", lambda *a, **k: pytest.fail("fetched although present"))
    assert locate_dataset("mnist", data_dir=target) == folder
    assert len(build_datasets("mnist", data_dir=target).train) == 6


def test_download_goes_to_cache_without_data_dir(tmp_path, monkeypatch):
    serve_idx_files(tmp_path, monkeypatch)
    build_datasets("mnist")
    assert locate_dataset("mnist") == tmp_path / "cache" / "sparsetime" / "data" / "mnist"


def test_wrong_checksum_is_rejected_and_nothing_kept(tmp_path, monkeypatch):
    serve_idx_files(tmp_path, monkeypatch, corrupt="t10k-images-idx3-ubyte")
    target = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError, match="MD5 .* differs from the published 0{32}"):
        build_datasets("mnist", data_dir=target)
    folder = target / "mnist"
    assert not (folder / "t10k-images-idx3-ubyte.gz").exists()
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]


def test_download_verified_with_monkeypatched_fetch(tmp_path, monkeypatch):
    calls = []

    def fake_fetch(url, destination, timeout=30.0):
        calls.append(url)
        Path(destination).write_bytes(b"hello")

    monkeypatch.setattr(download, "fetch", fake_fetch)
    good = hashlib.md5(b"hello").hexdigest()
    path = download_verified("https://example.invalid/f", tmp_path, "f.bin", good.upper())
    assert path.read_bytes() == b"hello" and calls == ["https://example.invalid/f"]
    with pytest.raises(ChecksumError, match="discarded"):
        download_verified("https://example.invalid/g", tmp_path, "g.bin", hashlib.md5(b"other").hexdigest())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_fetch_rejects_other_schemes(tmp_path):
    with pytest.raises(ValueError, match="unsupported URL scheme 'ftp'.*allowed: https, http, file"):
        download.fetch("ftp://example.invalid/x", tmp_path / "x")


def add_bytes(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def test_cifar_tarball_download_and_extraction(tmp_path, monkeypatch):
    archive = tmp_path / "cifar-10-python.tar.gz"
    rng = np.random.default_rng(1)
    with tarfile.open(archive, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {b"data": rng.integers(0, 256, (1, 3072), dtype=np.uint8), b"labels": [int(rng.integers(10))]}
            add_bytes(tar, f"cifar-10-batches-py/{name}", pickle.dumps(batch, protocol=2))
    item = catalog.Download(archive.as_uri(), archive.name, hashlib.md5(archive.read_bytes()).hexdigest())
    monkeypatch.setitem(catalog.CATALOG, "cifar10", dataclasses.replace(catalog.CATALOG["cifar10"], downloads=(item,)))
    target = tmp_path / "data"
    splits = build_datasets("cifar10", data_dir=target)
    assert (len(splits.train), len(splits.test)) == (5, 1)
    assert sorted(p.name for p in target.iterdir()) == ["cifar-10-batches-py"]  # archive removed, no staging


def test_unsafe_tar_members_are_refused(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        add_bytes(tar, "good/file", b"ok")
        add_bytes(tar, "../escaped", b"bad")
    destination = tmp_path / "out"
    with pytest.raises(tarfile.TarError):
        extract_tar(archive, destination)
    assert not (tmp_path / "escaped").exists()
    assert list(destination.iterdir()) == []
    absolute = tmp_path / "abs.tar"
    with tarfile.open(absolute, "w") as tar:
        add_bytes(tar, str(tmp_path / "abs-target"), b"bad")
    extract_tar(absolute, tmp_path / "out2")  # the data filter strips the leading '/' ...
    assert not (tmp_path / "abs-target").exists()  # ... so nothing lands outside the destination
