"""Read what a report needs from run directories and sweep directories.

A PATH is a run directory (``config.yaml``), a sweep directory (``index.sqlite``: its current
points, the keys they set and the figures its sweep file names) or a folder of run directories.
Finished runs (with ``summary.json``) are reported; the others are listed as not finished.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sparsetime.train.rundir import RunDir

from ..index import INDEX_NAME, SWEEP_COPY, SweepIndex
from .figures import FigureSpec, parse_figures


@dataclass
class RunRecord:
    """One finished run: flattened resolved config (dotted keys), summary, per-epoch and per-update records."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    updates: list[dict[str, Any]]

    @property
    def seed(self) -> Any:
        return self.config.get("seed")


@dataclass
class Collection:
    """Finished runs, the rest (path, status, error), sweep keys in file order and figures sweep files name."""

    runs: list[RunRecord] = field(default_factory=list)
    unfinished: list[tuple[Path, str, str]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    figures: list[FigureSpec] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)


def flat_config(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config mapping -> dotted keys, free-form mappings included (``model_options.hidden``)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def read_run(path: Path) -> RunRecord:
    """A finished run directory's record."""
    run = RunDir(path)
    with run.config_path.open(encoding="utf-8") as fh:
        config = yaml.safe_load(fh) or {}
    return RunRecord(path, flat_config(config), run.read_summary(), run.read_metrics(), run.read_updates())


def _add_run(collection: Collection, path: Path, status: str = "", error: str = "") -> None:
    if (path / "summary.json").is_file():
        collection.runs.append(read_run(path))
    else:
        collection.unfinished.append((path, status or ("interrupted" if (path / "checkpoint.pt").is_file()
                                                       else "not started"), error))


def _add_sweep(collection: Collection, path: Path) -> None:
    index = SweepIndex(path)
    for row in index.rows():
        for key in json.loads(row["overrides"]):
            if key not in collection.keys:
                collection.keys.append(key)
        status = "" if row["status"] == "finished" else row["status"]  # "": judged from the run directory
        _add_run(collection, path / row["run_dir"], status, row["error"] or "")
    copy = path / SWEEP_COPY
    if copy.is_file():
        data = yaml.safe_load(copy.read_text(encoding="utf-8")) or {}
        named = parse_figures(data.get("figures") if isinstance(data, Mapping) else None,
                              f"{copy}: figures")
        collection.figures.extend(f for f in named if f not in collection.figures)


def collect(paths: Iterable[str | Path]) -> Collection:
    """Runs of every PATH; ValueError for a PATH that is none of the three kinds."""
    collection = Collection()
    for raw in paths:
        path = Path(raw)
        collection.sources.append(path)
        if (path / INDEX_NAME).is_file():
            _add_sweep(collection, path)
        elif (path / "config.yaml").is_file():
            _add_run(collection, path)
        elif path.is_dir() and any((child / "config.yaml").is_file() for child in path.iterdir()):
            for child in sorted(path.iterdir()):
                if (child / "config.yaml").is_file():
                    _add_run(collection, child)
        else:
            raise ValueError(f"{str(path)!r} is not a run directory (no config.yaml), a sweep directory (no "
                             f"{INDEX_NAME}) or a folder of run directories")
    seen: set[Path] = set()
    unique = []
    for run in collection.runs:  # a run reached through two PATHs counts once
        if run.path.resolve() not in seen:
            seen.add(run.path.resolve())
            unique.append(run)
    collection.runs = unique
    return collection
