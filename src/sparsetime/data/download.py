"""Verified downloads and safe archive extraction.

Files are fetched into a temporary file next to their destination, checked against their
MD5, and only then renamed into place, so a partial or corrupted download never looks valid.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from .errors import ChecksumError

logger = logging.getLogger(__name__)

ALLOWED_SCHEMES = ("https", "http", "file")


def fetch(url: str, destination: Path, timeout: float = 30.0) -> None:
    """Copy the resource at ``url`` into ``destination`` (overwritten)."""
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ALLOWED_SCHEMES:
        raise ValueError(f"unsupported URL scheme {scheme!r} in {url!r}; allowed: {', '.join(ALLOWED_SCHEMES)}")
    with urllib.request.urlopen(url, timeout=timeout) as response, open(destination, "wb") as out:
        shutil.copyfileobj(response, out, length=1 << 20)


def file_md5(path: Path) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_verified(url: str, directory: Path, filename: str, md5: str) -> Path:
    """Download ``url`` to ``directory/filename`` if its MD5 equals ``md5``; return the path.

    On a mismatch the temporary file is deleted and ChecksumError raised.
    """
    directory.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{filename}.", suffix=".part")
    os.close(handle)
    temp = Path(temp_name)
    try:
        logger.info("downloading %s", url)
        fetch(url, temp)
        actual = file_md5(temp)
        if actual != md5.lower():
            raise ChecksumError(f"{url}: MD5 {actual} differs from the published {md5}; the file was discarded")
        target = directory / filename
        os.replace(temp, target)
        return target
    finally:
        temp.unlink(missing_ok=True)


def extract_tar(archive: Path, destination: Path) -> list[Path]:
    """Unpack ``archive`` into ``destination`` safely; return the top-level entries created.

    Uses tarfile's "data" filter (no absolute paths, no ``..``, no links leaving the tree, no
    devices) into a temporary folder, then renames the top-level entries into place. An
    entry that already exists is an error rather than being overwritten.
    """
    if not hasattr(tarfile, "data_filter"):
        raise RuntimeError(
            f"safe extraction of {archive} needs Python >= 3.10.12 / 3.11.4 (tarfile filters); "
            f"unpack it by hand into {destination}"
        )
    destination.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination, prefix=".extract-"))
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(staging, filter="data")
        created = []
        for entry in sorted(staging.iterdir()):
            target = destination / entry.name
            if target.exists():
                raise FileExistsError(f"{target} already exists; remove it to unpack {archive.name} again")
            os.replace(entry, target)
            created.append(target)
        return created
    finally:
        shutil.rmtree(staging, ignore_errors=True)
