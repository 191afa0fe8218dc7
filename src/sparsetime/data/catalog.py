"""What each named dataset is and where it may live: layout, statistics, downloads, hints.

Per-channel means and standard deviations are those of the training sets (pixel values in
[0, 1]); checksums are the published MD5s of the canonical files.
"""
from __future__ import annotations

from dataclasses import dataclass

IDX_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass(frozen=True)
class Download:
    """One file to fetch: where from, the name to store it under, and its MD5."""

    url: str
    filename: str
    md5: str


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset.

    ``folders`` are tried under every root (the root itself is tried too); the first one is
    where downloads go. ``required`` files must all exist for a folder to count (IDX files
    may also be gzipped; for CIFAR the last one is the test batch, the others the training
    batches; for image folders they are the split folders). ``archive``: the downloads are
    tarballs unpacked into the root.
    """

    name: str
    kind: str  # "idx", "cifar", "imagefolder" or "synthetic"
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    folders: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    system_dirs: tuple[str, ...] = ()
    downloads: tuple[Download, ...] = ()
    archive: bool = False
    crop_padding: int = 0
    flip: bool = False
    label_key: bytes = b"labels"
    hint: str = ""


_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"

CATALOG: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist",
        kind="idx",
        num_classes=10,
        mean=(0.2860,),
        std=(0.3530,),
        folders=("fashion_mnist", "fashion-mnist", "FashionMNIST/raw"),
        required=IDX_FILES,
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        downloads=(
            Download(_FASHION_URL + "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz",
                     "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            Download(_FASHION_URL + "train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz",
                     "25c81989df183df01b3e8a0aad5dffbe"),
            Download(_FASHION_URL + "t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                     "bef4ecab320f06d8554ea6380940ec79"),
            Download(_FASHION_URL + "t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                     "bb300cfdad3c16e7a12a480ee83cd310"),
        ),
        hint=(
            "install Debian's package (apt-get install dataset-fashion-mnist), or put the four "
            "IDX files (train-images-idx3-ubyte.gz, ...) from " + _FASHION_URL + " in a folder "
            "and pass data_dir= or set SPARSETIME_DATA"
        ),
    ),
    "mnist": DatasetInfo(
        name="mnist",
        kind="idx",
        num_classes=10,
        mean=(0.1307,),
        std=(0.3081,),
        folders=("mnist", "MNIST/raw"),
        required=IDX_FILES,
        downloads=(
            Download(_MNIST_URL + "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz",
                     "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            Download(_MNIST_URL + "train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz",
                     "d53e105ee54ea40749a09fcbcd1e9432"),
            Download(_MNIST_URL + "t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                     "9fb629c4189551a2d022fa330f9573f3"),
            Download(_MNIST_URL + "t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                     "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
        hint=(
            "put the four IDX files (train-images-idx3-ubyte.gz, ...) from " + _MNIST_URL
            + " in a folder and pass data_dir= or set SPARSETIME_DATA"
        ),
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        kind="cifar",
        num_classes=10,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        folders=("cifar-10-batches-py",),
        required=(*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"),
        downloads=(
            Download(_CIFAR_URL + "cifar-10-python.tar.gz", "cifar-10-python.tar.gz",
                     "c58f30108f718f92721af3b95e74349a"),
        ),
        archive=True,
        crop_padding=4,
        flip=True,
        label_key=b"labels",
        hint=(
            "unpack " + _CIFAR_URL + "cifar-10-python.tar.gz into a folder (it creates "
            "cifar-10-batches-py/) and pass data_dir= or set SPARSETIME_DATA"
        ),
    ),
    "cifar100": DatasetInfo(
        name="cifar100",
        kind="cifar",
        num_classes=100,
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        folders=("cifar-100-python",),
        required=("train", "test"),
        downloads=(
            Download(_CIFAR_URL + "cifar-100-python.tar.gz", "cifar-100-python.tar.gz",
                     "eb9058c3a382ffc7106e4002c42a8d85"),
        ),
        archive=True,
        crop_padding=4,
        flip=True,
        label_key=b"fine_labels",
        hint=(
            "unpack " + _CIFAR_URL + "cifar-100-python.tar.gz into a folder (it creates "
            "cifar-100-python/) and pass data_dir= or set SPARSETIME_DATA"
        ),
    ),
    "imagefolder": DatasetInfo(
        name="imagefolder",
        kind="imagefolder",
        num_classes=0,  # read from the folder
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        required=("train", "val"),
        hint="pass data_dir= pointing at a folder with train/ and val/, one sub-folder per class",
    ),
    "synthetic": DatasetInfo(
        name="synthetic", kind="synthetic", num_classes=0, mean=(), std=()
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    """The catalog entry for ``name``; ValueError listing the known names otherwise."""
    if name not in CATALOG:
        raise ValueError(f"unknown dataset {name!r}; available datasets: {', '.join(sorted(CATALOG))}")
    return CATALOG[name]
