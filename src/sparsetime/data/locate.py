"""Find a dataset on disk, or download it: data_dir, $SPARSETIME_DATA, system dirs, cache, network.

The first folder that holds every required file wins. When nothing works, one
DatasetNotFoundError names every place tried and how to obtain the data.
"""
from __future__ import annotations

import http.client
import logging
import os
import tarfile
from pathlib import Path

from . import download as _download
from .catalog import DatasetInfo, dataset_info
from .errors import ChecksumError, DatasetNotFoundError

logger = logging.getLogger(__name__)

ENV_VAR = "SPARSETIME_DATA"


def cache_root() -> Path:
    """Where downloads go when neither data_dir nor $SPARSETIME_DATA is given."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sparsetime" / "data"


def is_complete(info: DatasetInfo, folder: Path) -> bool:
    """True if ``folder`` holds every required file (IDX files may be gzipped)."""
    if not folder.is_dir():
        return False
    for name in info.required:
        path = folder / name
        if info.kind == "imagefolder":
            if not path.is_dir():
                return False
        elif not (path.is_file() or (info.kind == "idx" and path.with_name(name + ".gz").is_file())):
            return False
    return True


def _roots(data_dir: str | os.PathLike[str] | None) -> list[tuple[Path, str]]:
    roots: list[tuple[Path, str]] = []
    if data_dir is not None:
        roots.append((Path(data_dir).expanduser(), "data_dir argument"))
    env = os.environ.get(ENV_VAR)
    if env:
        roots.append((Path(env).expanduser(), f"${ENV_VAR}"))
    return roots


def candidate_folders(info: DatasetInfo, data_dir: str | os.PathLike[str] | None) -> list[tuple[Path, str]]:
    """Every folder searched, in order, with a label saying why it is searched."""

    def under(root: Path, label: str) -> list[tuple[Path, str]]:
        return [(root, label)] + [(root / folder, label) for folder in info.folders]

    candidates: list[tuple[Path, str]] = []
    for root, label in _roots(data_dir):
        candidates += under(root, label)
    candidates += [(Path(d), "system location") for d in info.system_dirs]
    if info.downloads:
        candidates += under(cache_root(), "download cache")
    return candidates


def locate_dataset(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Folder holding dataset ``name`` without downloading, or None (always None for synthetic)."""
    info = dataset_info(name)
    if info.kind == "synthetic":
        return None
    for folder, _ in candidate_folders(info, data_dir):
        if is_complete(info, folder):
            return folder
    return None


def download_root(data_dir: str | os.PathLike[str] | None) -> Path:
    """Root that downloads go under: data_dir, else $SPARSETIME_DATA, else the cache."""
    roots = _roots(data_dir)
    return roots[0][0] if roots else cache_root()


def ensure_dataset(name: str, data_dir: str | os.PathLike[str] | None = None, download: bool = True) -> Path:
    """Folder holding dataset ``name``, downloading it if allowed and needed."""
    info = dataset_info(name)
    tried = candidate_folders(info, data_dir)
    for folder, label in tried:
        if is_complete(info, folder):
            logger.info("dataset %s found in %s (%s)", name, folder, label)
            return folder
    lines = [f"  - {folder} ({label})" for folder, label in tried]
    if not info.downloads:
        lines.append("  - download: not available for this dataset")
    elif not download:
        lines.append("  - download: skipped (download=False)")
    else:
        root = download_root(data_dir)
        try:
            return _download_into(info, root)
        except (OSError, http.client.HTTPException, ChecksumError, tarfile.TarError, ValueError) as exc:
            lines.append(f"  - download into {root}: failed: {exc}")
    message = f"dataset {name!r} not found. Places tried:\n" + "\n".join(lines)
    if info.hint:
        message += f"\nTo get it: {info.hint}."
    raise DatasetNotFoundError(message)


def _download_into(info: DatasetInfo, root: Path) -> Path:
    if info.archive:
        for item in info.downloads:
            archive = _download.download_verified(item.url, root, item.filename, item.md5)
            try:
                _download.extract_tar(archive, root)
            finally:
                archive.unlink(missing_ok=True)
        folder = root / info.folders[0]
    else:
        folder = root / info.folders[0]
        for item in info.downloads:
            if not (folder / item.filename).is_file():
                _download.download_verified(item.url, folder, item.filename, item.md5)
    if not is_complete(info, folder):
        raise FileNotFoundError(f"downloaded files did not produce a complete {folder}")
    logger.info("dataset %s downloaded into %s", info.name, folder)
    return folder
