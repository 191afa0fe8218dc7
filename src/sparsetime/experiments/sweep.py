"""Run a sweep, show its state, or show what it would run.

``run_sweep`` checks the sweep file and expands every point before anything runs, writes the
sweep directory (a copy of the sweep file and ``index.sqlite``), reconciles the index with the run
directories on disk, and hands the claimable points to an engine. Finished points are skipped;
points whose claimer died are resumed; failed points stay failed unless ``retry_failed``.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsetime.train.checkpoint import atomic_write_text

from .engines import check_workers, get_engine
from .index import STATUSES, SWEEP_COPY, SWEEP_SOURCE, SweepIndex
from .points import Point, expand_points
from .sweep_file import SweepSpec

log = logging.getLogger(__name__)


@dataclass
class SweepState:
    """Each point of a sweep with its index row (None for a point not yet in the index)."""

    spec: SweepSpec
    points: list[Point]
    rows: dict[str, dict[str, Any]]

    def status(self, point: Point) -> str:
        """The point's status; ``running`` of a dead claimer reads ``stale``."""
        row = self.rows.get(point.run_dir.name)
        if row is None:
            return "finished" if (point.run_dir / "summary.json").is_file() else "pending"
        if row["status"] == "running" and SweepIndex(self.spec.directory).is_stale(row):
            return "stale"
        return row["status"]

    def counts(self) -> Counter[str]:
        return Counter(self.status(p) for p in self.points)


def sweep_state(spec: SweepSpec) -> SweepState:
    """Points and index rows, read only (nothing is written)."""
    points = expand_points(spec)
    index = SweepIndex(spec.directory)
    return SweepState(spec, points, {r["run_dir"]: r for r in index.rows()})


def run_sweep(spec: SweepSpec, engine: str = "local", workers: int = 1, retry_failed: bool = False,
              verbose: bool = True) -> SweepState:
    """Run every point not finished yet on ``engine``; returns the final state."""
    module = get_engine(engine)
    options = spec.ray if engine == "ray" else spec.slurm if engine == "submitit" else {}
    check_workers(workers)  # bad input is refused before anything is written
    module.check(options)
    points = expand_points(spec)
    index = SweepIndex(spec.directory)
    index.sync(points, retry_failed=retry_failed)
    atomic_write_text(spec.directory / SWEEP_COPY, spec.text or json.dumps({"name": spec.name}))
    if spec.source is not None:
        atomic_write_text(spec.directory / SWEEP_SOURCE, Path(spec.source).as_posix() + "\n")
    todo = index.count_claimable()
    log.info("sweep %s: %d points, %d to run, engine %s", spec.name, len(points), todo, engine)
    if todo:
        module.run(index, workers, options, verbose)
    return sweep_state(spec)


# ----------------------------------------------------------------------------- text output

def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _fixed(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _shorten(text: str, width: int = 120) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    return "\n".join(out)


def format_status(state: SweepState) -> str:
    """The table of points and their state, then the counts."""
    keys = state.spec.varying_keys
    header = ["#", *keys, "seed", "status", "test acc", "Rs", "run directory", "error"]
    lines = []
    for point in state.points:
        row = state.rows.get(point.run_dir.name) or {}
        lines.append([str(point.index), *(_value(point.overrides.get(k, "")) for k in keys), str(point.seed),
                      state.status(point), _percent(row.get("test_accuracy")), _fixed(row.get("itop_rate")),
                      point.run_dir.name, _shorten(row.get("error") or "")])
    counts = state.counts()
    summary = ", ".join(f"{counts[s]} {s}" for s in (*STATUSES, "stale") if counts[s] or s in STATUSES)
    return f"{_table(header, lines)}\n{len(state.points)} points in {state.spec.directory}: {summary}"


def format_plan(state: SweepState) -> str:
    """What a run would do: every point, its run directory and whether it would run."""
    header = ["#", "point", "config hash", "run directory", "action"]
    lines = []
    for point in state.points:
        status = state.status(point)
        action = {"finished": "skip (finished)", "failed": "skip (failed; --retry-failed runs it)",
                  "running": "skip (running elsewhere)", "stale": "resume"}.get(status, "run")
        if status == "pending" and (point.run_dir / "checkpoint.pt").is_file():
            action = "resume"
        lines.append([str(point.index), point.describe(), point.config_hash, str(point.run_dir), action])
    return f"{_table(header, lines)}\n{len(state.points)} points; nothing was written (dry run)"
