"""Scalar tracking of a run: ``scalars.csv`` always, TensorBoard event files when asked for.

After every epoch the trainer hands over the epoch's record, the sparsifier's update history and
its layer report. The tracker turns them into scalars by global step: train / validation / test
loss and accuracy, learning rate, density and Rs at the epoch's last step, the Rs of every layer,
and the replaced fraction of each topology update at that update's step.

``scalars.csv`` (columns ``step,tag,value``) is rewritten atomically after every epoch. A resumed
run first drops the rows after its checkpoint's step, so a run killed and resumed has the same
file as one never interrupted. TensorBoard (``logging.tensorboard=true``) writes through
``torch.utils.tensorboard`` into ``<run>/tensorboard``; on resume the writer purges events after
the checkpoint's step (TensorBoard's ``purge_step``).
"""
from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write_text
from .config_schema import LoggingConfig

log = logging.getLogger(__name__)
SCALARS_FILE = "scalars.csv"
TENSORBOARD_DIR = "tensorboard"
COLUMNS = ("step", "tag", "value")
# (record key, tag) of the per-epoch scalars
EPOCH_SCALARS = (("train_loss", "train/loss"), ("train_accuracy", "train/accuracy"),
                 ("validation_loss", "validation/loss"), ("validation_accuracy", "validation/accuracy"),
                 ("test_loss", "test/loss"), ("test_accuracy", "test/accuracy"), ("lr", "train/lr"),
                 ("density", "sparsity/density"), ("itop_rate", "sparsity/itop_rate"))
LAYER_TAG = "sparsity/itop_rate/"
REPLACED_TAG = "sparsity/replaced_fraction"
Row = tuple[int, str, float]


def tensorboard_writer(log_dir: Path, purge_step: int | None) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter``; ValueError naming the extra when TensorBoard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("config key 'logging.tensorboard' = True needs the tensorboard package; install it with "
                         "pip install 'sparsetime[tensorboard]', or set logging.tensorboard=false") from None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def read_scalars(path: Path) -> list[Row]:
    """The rows of a ``scalars.csv`` (empty when there is none); ValueError when it is unreadable."""
    if not path.is_file():
        return []
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            return [(int(r["step"]), str(r["tag"]), float(r["value"])) for r in csv.DictReader(fh)]
    except (KeyError, TypeError, ValueError, csv.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(path)!r} is not a scalars file ({COLUMNS}): {exc}") from None


def _kept_rows(path: Path, step: int) -> list[Row]:
    """The rows up to ``step`` of an earlier attempt; an unreadable file is started afresh (it only
    repeats what metrics.jsonl and updates.jsonl hold), with a warning."""
    try:
        return [r for r in read_scalars(path) if r[0] <= step]
    except ValueError as exc:
        log.warning("%s; writing it anew from this epoch on", exc)
        return []


def epoch_rows(record: Mapping[str, Any], updates: Iterable[Mapping[str, Any]], layers: Sequence[Mapping[str, Any]],
               after_step: int) -> list[Row]:
    """The scalars of one finished epoch: its updates after ``after_step``, then the epoch's own values."""
    step = int(record["step"])
    rows: list[Row] = [(int(u["step"]), REPLACED_TAG, float(u["replaced_fraction"])) for u in updates
                       if after_step < int(u["step"]) <= step]
    rows += [(step, tag, float(record[key])) for key, tag in EPOCH_SCALARS if record.get(key) is not None]
    rows += [(step, LAYER_TAG + str(layer["name"]), float(layer["itop_rate"])) for layer in layers
             if layer.get("itop_rate") is not None]
    return rows


class RunTracker:
    """Writes a run's scalars to ``scalars.csv`` and, when enabled, TensorBoard; ``step``: where the run starts."""

    def __init__(self, run_path: Path, settings: LoggingConfig, step: int) -> None:
        self.path = Path(run_path) / SCALARS_FILE
        self.step = int(step)
        self.rows = _kept_rows(self.path, self.step)  # drop what came after the checkpoint
        self.writer = (tensorboard_writer(Path(run_path) / TENSORBOARD_DIR, self.step + 1 if self.step else None)
                       if settings.tensorboard else None)

    def epoch_end(self, record: Mapping[str, Any], updates: Iterable[Mapping[str, Any]] | None,
                  layers: Sequence[Mapping[str, Any]]) -> None:
        """Book one finished epoch (its record, the update history so far, the layer report now)."""
        new = epoch_rows(record, updates or (), layers, self.step)
        self.rows.extend(new)
        self.step = int(record["step"])
        buffer = io.StringIO()
        out = csv.writer(buffer, lineterminator="\n")
        out.writerow(COLUMNS)
        out.writerows(self.rows)
        atomic_write_text(self.path, buffer.getvalue())
        if self.writer is not None:
            for step, tag, value in new:
                self.writer.add_scalar(tag, value, global_step=step)
            self.writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer (the CSV is complete after every epoch)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
