"""``<sweep>/index.sqlite``: one row per point, the state every engine and process shares.

Table ``runs``: ``run_dir`` (relative to the sweep directory), ``point`` (position in the sweep
file; NULL for rows of points the file no longer has), ``config_hash``, ``overrides`` (JSON of the
keys the point sets), ``seed``, ``status`` (pending|running|finished|failed), ``error`` (one line),
``started_at`` / ``finished_at`` (ISO 8601, UTC), ``attempts``, the claiming process (``host``,
``pid``, ``pid_start``, ``heartbeat`` in Unix seconds), ``config`` (the resolved config as JSON)
and the summary metrics as columns (``test_accuracy``, ``best_test_accuracy``, ``itop_rate``,
``density``, ``train_flops``, ``train_seconds``, ...), so pandas or sqlite3 can query it.

Claims are atomic: each is one ``BEGIN IMMEDIATE`` transaction (the database's write lock), so
two processes never claim the same point; a point whose claimer died is claimable again (see
:mod:`.owner`). The database keeps SQLite's rollback journal rather than WAL: WAL needs every
process on one host, and a SLURM job array shares the sweep directory across nodes.
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .owner import STALE_AFTER_SECONDS, Owner

STATUSES = ("pending", "running", "finished", "failed")
METRIC_COLUMNS = {
    "test_accuracy": "REAL", "best_test_accuracy": "REAL", "train_accuracy": "REAL",
    "validation_accuracy": "REAL", "test_loss": "REAL", "train_loss": "REAL", "itop_rate": "REAL",
    "density": "REAL", "train_flops": "REAL", "inference_flops": "REAL", "dense_inference_flops": "REAL",
    "train_seconds": "REAL", "epochs": "INTEGER", "steps": "INTEGER", "topology_updates": "INTEGER",
}
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    run_dir TEXT PRIMARY KEY,
    point INTEGER,
    config_hash TEXT NOT NULL,
    overrides TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    error TEXT,
    started_at TEXT,
    finished_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    host TEXT,
    pid INTEGER,
    pid_start TEXT,
    heartbeat REAL,
    config TEXT NOT NULL,
    {", ".join(f"{name} {kind}" for name, kind in METRIC_COLUMNS.items())}
)"""
INDEX_NAME = "index.sqlite"
SWEEP_COPY = "sweep.yaml"  # the sweep file, copied into the sweep directory when it runs
SWEEP_SOURCE = "sweep_source.txt"  # the path the sweep file was given by, for reports to name it


def now_iso() -> str:
    """The current time, ISO 8601 in UTC, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {name: summary.get(name) for name in METRIC_COLUMNS}


class SweepIndex:
    """The index of the sweep whose directory is ``sweep_dir``."""

    def __init__(self, sweep_dir: str | Path, stale_after: float = STALE_AFTER_SECONDS) -> None:
        self.sweep_dir = Path(sweep_dir)
        self.path = self.sweep_dir / INDEX_NAME
        self.stale_after = stale_after

    # ------------------------------------------------------------------ connections
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the database's write lock from its start."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def exists(self) -> bool:
        return self.path.is_file()

    def create(self) -> None:
        """Create the table if it is missing."""
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        with self._write() as conn:
            conn.execute(_SCHEMA)

    # ------------------------------------------------------------------ reading
    def rows(self, current_only: bool = True) -> list[dict[str, Any]]:
        """Every row as a dict, in sweep-file order (rows of points the file no longer has last, or left out)."""
        if not self.exists():
            return []
        conn = self._connect()
        try:
            where = "WHERE point IS NOT NULL" if current_only else ""
            return [dict(r) for r in conn.execute(f"SELECT * FROM runs {where} ORDER BY point IS NULL, point, run_dir")]
        finally:
            conn.close()

    def owner_of(self, row: Mapping[str, Any]) -> Owner | None:
        return Owner(row["host"], int(row["pid"]), row["pid_start"] or "") if row["pid"] is not None else None

    def is_stale(self, row: Mapping[str, Any]) -> bool:
        """A running row whose claiming process is gone."""
        owner = self.owner_of(row)
        return row["status"] == "running" and (owner is None or not owner.alive(row["heartbeat"], self.stale_after))

    def claimable(self, row: Mapping[str, Any]) -> bool:
        return row["point"] is not None and (row["status"] == "pending" or self.is_stale(row))

    def count_claimable(self) -> int:
        return sum(self.claimable(r) for r in self.rows())

    # ------------------------------------------------------------------ writing
    def sync(self, points: Sequence[Any], retry_failed: bool = False) -> None:
        """Add missing points; reconcile rows with the run directories on disk.

        A point whose run directory holds ``summary.json`` is finished (whoever trained it); a row
        marked finished whose summary is gone is pending again; ``retry_failed`` re-queues failures.
        """
        self.create()
        with self._write() as conn:
            existing = {r["run_dir"]: dict(r) for r in conn.execute("SELECT * FROM runs")}
            conn.execute("UPDATE runs SET point = NULL")
            for point in points:
                name = point.run_dir.name
                row = existing.get(name)
                summary_path = self.sweep_dir / name / "summary.json"
                if row is None:
                    conn.execute("INSERT INTO runs (run_dir, point, config_hash, overrides, seed, config) "
                                 "VALUES (?, ?, ?, ?, ?, ?)", (name, point.index, point.config_hash,
                                                               json.dumps(point.overrides), point.seed,
                                                               point.config_json()))
                    row = {"status": "pending", "pid": None}
                else:
                    conn.execute("UPDATE runs SET point = ?, overrides = ? WHERE run_dir = ?",
                                 (point.index, json.dumps(point.overrides), name))
                finished_on_disk = summary_path.is_file()
                if finished_on_disk and row["status"] != "finished":
                    if row["status"] == "running" and not self.is_stale(row):
                        continue  # its owner is writing the result now
                    self._set_finished(conn, name, json.loads(summary_path.read_text(encoding="utf-8")))
                elif not finished_on_disk and row["status"] == "finished":
                    conn.execute("UPDATE runs SET status = 'pending', finished_at = NULL WHERE run_dir = ?", (name,))
                elif retry_failed and row["status"] == "failed":
                    conn.execute("UPDATE runs SET status = 'pending', error = NULL WHERE run_dir = ?", (name,))

    def claim(self, owner: Owner, run_dir: str | None = None) -> dict[str, Any] | None:
        """Atomically claim the first claimable point (or point ``run_dir``); None if there is none."""
        with self._write() as conn:
            query = "SELECT * FROM runs WHERE point IS NOT NULL AND status IN ('pending', 'running')"
            args: tuple[Any, ...] = ()
            if run_dir is not None:
                query, args = query + " AND run_dir = ?", (run_dir,)
            for row in conn.execute(query + " ORDER BY point", args).fetchall():
                if row["status"] == "pending" or self.is_stale(row):
                    conn.execute("UPDATE runs SET status = 'running', error = NULL, host = ?, pid = ?, pid_start = ?, "
                                 "heartbeat = ?, started_at = COALESCE(started_at, ?), attempts = attempts + 1 "
                                 "WHERE run_dir = ?", (owner.host, owner.pid, owner.start, time.time(), now_iso(),
                                                       row["run_dir"]))
                    return {**dict(row), "status": "running", "host": owner.host, "pid": owner.pid,
                            "pid_start": owner.start, "attempts": row["attempts"] + 1}
        return None

    def heartbeat(self, run_dir: str, owner: Owner) -> None:
        """Mark the claim on ``run_dir`` as alive."""
        with self._write() as conn:
            conn.execute("UPDATE runs SET heartbeat = ? WHERE run_dir = ? AND status = 'running' AND host = ? "
                         "AND pid = ?", (time.time(), run_dir, owner.host, owner.pid))

    def finish(self, run_dir: str, summary: Mapping[str, Any]) -> None:
        """Record a finished point and its summary metrics."""
        with self._write() as conn:
            self._set_finished(conn, run_dir, summary)

    @staticmethod
    def _set_finished(conn: sqlite3.Connection, run_dir: str, summary: Mapping[str, Any]) -> None:
        metrics = _metrics(summary)
        assignments = ", ".join(f"{name} = ?" for name in metrics)
        conn.execute(f"UPDATE runs SET status = 'finished', error = NULL, finished_at = ?, {assignments} "
                     "WHERE run_dir = ?", (now_iso(), *metrics.values(), run_dir))

    def fail(self, run_dir: str, owner: Owner, reason: str) -> None:
        """Record the failure of the point ``owner`` was running."""
        with self._write() as conn:
            conn.execute("UPDATE runs SET status = 'failed', error = ?, finished_at = ? WHERE run_dir = ? AND "
                         "status = 'running' AND host = ? AND pid = ?",
                         (reason, now_iso(), run_dir, owner.host, owner.pid))

    def fail_orphans(self, reason: str, owner: Owner | None = None, run_dir: str | None = None) -> list[str]:
        """Mark failed the points left running by a dead process (``owner``) or at ``run_dir``; returns them."""
        failed = []
        with self._write() as conn:
            for row in conn.execute("SELECT * FROM runs WHERE status IN ('running', 'pending')").fetchall():
                if owner is not None and (row["status"], row["host"], row["pid"]) != ("running", owner.host, owner.pid):
                    continue
                if run_dir is not None and row["run_dir"] != run_dir:
                    continue
                if row["status"] == "running" and not self.is_stale(row):
                    continue
                conn.execute("UPDATE runs SET status = 'failed', error = ?, finished_at = ? WHERE run_dir = ?",
                             (reason, now_iso(), row["run_dir"]))
                failed.append(row["run_dir"])
        return failed

    def release(self, run_dir: str, owner: Owner) -> None:
        """Give a claim back (the run was interrupted cleanly; its checkpoint is kept)."""
        with self._write() as conn:
            conn.execute("UPDATE runs SET status = 'pending' WHERE run_dir = ? AND status = 'running' AND host = ? "
                         "AND pid = ?", (run_dir, owner.host, owner.pid))
