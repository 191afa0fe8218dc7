"""``sparsetime runs [DIR]``: one line per run directory found under DIR.

A run directory is a folder with ``config.yaml`` (sweeps and lottery experiments nest them; every
one is listed). Its status: ``finished`` (``summary.json``), ``stopped`` (a checkpoint, no
summary: interrupted, failed, or still training), ``new`` (nothing trained yet). Files that cannot
be read are reported in the status column instead of failing the whole listing.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CONFIG, SUMMARY, METRICS, CHECKPOINT = "config.yaml", "summary.json", "metrics.jsonl", "checkpoint.pt"
HEADER = ("run", "method", "dataset", "model", "density", "status", "test acc", "Rs", "epochs")


@dataclass
class RunRow:
    """What ``sparsetime runs`` shows of one run directory."""

    path: Path
    method: str = "?"
    dataset: str = "?"
    model: str = "?"
    density: float | None = None
    status: str = "new"
    test_accuracy: float | None = None
    itop_rate: float | None = None
    epochs_done: int = 0
    epochs_total: int | None = None


def find_runs(root: str | Path) -> list[Path]:
    """Every run directory at or below ``root``, sorted (ValueError when ``root`` is not a folder)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{str(root)!r} is not a directory; pass the output_dir that holds the run directories")
    found = [Path(d) for d, _, files in os.walk(root) if CONFIG in files]
    return sorted(found)


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def _metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    if not all(isinstance(r, dict) for r in records):
        raise ValueError("not one JSON object per line")
    return records


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_row(path: Path) -> RunRow:
    """The row of the run directory ``path``."""
    row = RunRow(path)
    try:
        with (path / CONFIG).open(encoding="utf-8") as fh:
            config = yaml.safe_load(fh)
        if not isinstance(config, dict):
            raise ValueError("not a mapping")
    except (OSError, yaml.YAMLError, ValueError, UnicodeDecodeError):
        row.status = "unreadable config.yaml"
        return row
    sparsity = config.get("sparsity") if isinstance(config.get("sparsity"), dict) else {}
    row.method, row.dataset, row.model = (str(x) for x in (sparsity.get("method", "?"), config.get("dataset", "?"),
                                                           config.get("model", "?")))
    row.density = _number(sparsity.get("density"))
    epochs, extend = _number(config.get("epochs")), _number(config.get("extend", 1.0))
    if epochs is not None and extend is not None:
        row.epochs_total = max(1, round(epochs * extend))
    try:
        records = _metrics(path / METRICS)
    except (OSError, ValueError, UnicodeDecodeError):
        row.status = "unreadable metrics.jsonl"
        return row
    last: dict[str, Any] = records[-1] if records else {}
    row.epochs_done = len(records)
    if (path / SUMMARY).is_file():
        try:
            summary = _read_json(path / SUMMARY)
            if not isinstance(summary, dict) or _number(summary.get("test_accuracy")) is None:
                raise ValueError("no test_accuracy")
        except (OSError, ValueError, UnicodeDecodeError):
            row.status = "unreadable summary.json"
            return row
        row.status, last = "finished", summary
        row.epochs_done = int(summary.get("epochs", row.epochs_done))
    elif (path / CHECKPOINT).is_file():
        row.status = "stopped"
    row.test_accuracy = _number(last.get("test_accuracy"))
    row.itop_rate = _number(last.get("itop_rate"))
    row.density = _number(last.get("density")) if _number(last.get("density")) is not None else row.density
    return row


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_runs(rows: list[RunRow], root: str | Path) -> str:
    """The rows as an aligned text table (run paths relative to ``root``); densities are realised
    once an epoch finished, the config's target before."""
    table = [HEADER]
    for r in rows:
        rel = os.path.relpath(r.path, root)
        total = "?" if r.epochs_total is None else str(r.epochs_total)
        acc = None if r.test_accuracy is None else 100 * r.test_accuracy
        table.append((rel, r.method, r.dataset, r.model, _fmt(r.density, ".4f"), r.status, _fmt(acc, ".2f"),
                      _fmt(r.itop_rate, ".4f"), f"{r.epochs_done}/{total}"))
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table)
