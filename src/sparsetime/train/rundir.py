"""Layout of a run directory and the files in it.

``config.yaml`` (fully resolved), ``metrics.jsonl`` (one JSON object per finished epoch),
``updates.jsonl`` (one JSON object per topology update: step, Rs, density, replaced fraction, ...;
rewritten with the metrics from the history kept in the checkpoint, so a resumed run stays
consistent), ``summary.json`` (written once, when the run ends: its presence marks a finished run),
``checkpoint.pt`` (last finished epoch) and ``train.log``. All writes are atomic.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write_text
from .config import Config, config_to_yaml, load_config


#: what every summary.json holds (the CLI and the sweeps read them)
SUMMARY_KEYS = ("test_accuracy", "best_test_accuracy", "density", "itop_rate", "epochs", "train_seconds",
                "train_flops")


class RunDir:
    """Paths and readers/writers of one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def updates_path(self) -> Path:
        return self.path / "updates.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def log_path(self) -> Path:
        return self.path / "train.log"

    def is_finished(self) -> bool:
        """True once the run wrote its summary."""
        return self.summary_path.is_file()

    def write_config(self, config: Config) -> None:
        """Save the resolved config."""
        atomic_write_text(self.config_path, config_to_yaml(config))

    def read_config(self) -> Config:
        """The config the run was started with."""
        if not self.config_path.is_file():
            raise ValueError(f"{str(self.path)!r} is not a run directory: it has no config.yaml")
        return load_config(self.config_path)

    def write_metrics(self, history: Iterable[Mapping[str, Any]]) -> None:
        """Rewrite ``metrics.jsonl`` from the full per-epoch history (kept in the checkpoint)."""
        atomic_write_text(self.metrics_path, "".join(json.dumps(dict(r)) + "\n" for r in history))

    def read_metrics(self) -> list[dict[str, Any]]:
        """The per-epoch records written so far."""
        if not self.metrics_path.is_file():
            return []
        with self.metrics_path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def write_updates(self, updates: Iterable[Mapping[str, Any]]) -> None:
        """Rewrite ``updates.jsonl`` from the sparsifier's full topology-update history."""
        atomic_write_text(self.updates_path, "".join(json.dumps(dict(r)) + "\n" for r in updates))

    def read_updates(self) -> list[dict[str, Any]]:
        """The topology updates recorded so far (empty for runs without updates)."""
        if not self.updates_path.is_file():
            return []
        with self.updates_path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Save the final summary (marks the run as finished)."""
        atomic_write_text(self.summary_path, json.dumps(dict(summary), indent=2) + "\n")

    def read_summary(self) -> dict[str, Any]:
        """The final summary of a finished run; ValueError when the file is damaged or incomplete."""
        try:
            with self.summary_path.open(encoding="utf-8") as fh:
                summary = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            summary, problem = None, f"it is not JSON ({exc})"
        else:
            missing = sorted(set(SUMMARY_KEYS) - set(summary)) if isinstance(summary, dict) else None
            problem = (f"it is {type(summary).__name__}, not an object" if missing is None else
                       f"it lacks {', '.join(missing)}" if missing else None)
        if problem is not None:
            raise ValueError(f"{str(self.summary_path)!r} is damaged: {problem}. Delete it and run the same command "
                             "again: the run continues from its checkpoint and writes a new summary")
        return summary
