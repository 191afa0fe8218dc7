"""Run one claimed point in this process: the same code under every engine (local, Ray, submitit).

The point's resolved config is rebuilt from the index and trained with
:func:`sparsetime.train.train`, which skips a finished run and resumes an interrupted one from its
checkpoint. While it trains, a thread beats the claim's heartbeat. Any exception marks the point
``failed`` with a one-line reason (the traceback goes to ``<sweep>/errors/<run_dir>.txt``) and the
caller goes on with the next point; an interrupt gives the claim back.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
import traceback
from pathlib import Path
from typing import Any

from sparsetime.train.checkpoint import atomic_write_text
from sparsetime.train.config import config_from_dict, run_directory

from .index import SweepIndex
from .launch import train_with_torchrun
from .owner import HEARTBEAT_SECONDS, Owner

log = logging.getLogger(__name__)
MAX_REASON = 500


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, at most ``MAX_REASON`` characters."""
    text = " ".join(str(exc).split())
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 3] + "..."


def engine_reason(what: str, exc: BaseException) -> str:
    """One line for a failure reported by an engine: its wrapped traceback reduced to the error itself."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
    reason = f"{what}: {type(exc).__name__}" + (f": {lines[-1]}" if lines else "")
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 3] + "..."


class Heartbeat:
    """Beats the claim on ``run_dir`` every ``interval`` seconds while the block runs."""

    def __init__(self, index: SweepIndex, run_dir: str, owner: Owner, interval: float = HEARTBEAT_SECONDS) -> None:
        self.index, self.run_dir, self.owner, self.interval = index, run_dir, owner, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_dir}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.index.heartbeat(self.run_dir, self.owner)
            except Exception:  # noqa: BLE001 - a missed beat only makes the claim look older
                log.debug("heartbeat of %s failed", self.run_dir, exc_info=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_claimed(index: SweepIndex, row: dict[str, Any], owner: Owner) -> str:
    """Train the point of ``row`` (claimed by ``owner``); returns ``finished`` or ``failed``."""
    from sparsetime.train import train

    name = row["run_dir"]
    with Heartbeat(index, name, owner):
        try:
            config = dataclasses.replace(config_from_dict(json.loads(row["config"])),
                                         output_dir=str(index.sweep_dir))
            if run_directory(config).name != name:
                raise ValueError(f"the stored config of point {name!r} hashes to {run_directory(config).name!r}; "
                                 "the index is inconsistent (was the sparsetime version changed mid-sweep?)")
            log.info("point %s started: %s", row["point"], name)
            if config.world_size > 1:  # a distributed point: its own torchrun launch
                summary = train_with_torchrun(config, run_directory(config), index.sweep_dir / "launch")
            else:
                summary = train(config).summary
        except KeyboardInterrupt:
            index.release(name, owner)
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is recorded; the sweep goes on
            reason = one_line(exc)
            index.fail(name, owner, reason)
            _save_traceback(index.sweep_dir, name, exc)
            log.warning("point %s failed (%s): %s", row["point"], name, reason)
            return "failed"
    index.finish(name, summary)
    log.info("point %s finished: test accuracy %.2f%%, Rs %s (%s)", row["point"], 100 * summary["test_accuracy"],
             "n/a" if summary.get("itop_rate") is None else f"{summary['itop_rate']:.4f}", name)
    return "finished"


def _save_traceback(sweep_dir: Path, name: str, exc: BaseException) -> None:
    try:
        atomic_write_text(sweep_dir / "errors" / f"{name}.txt",
                          "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    except OSError:
        log.debug("could not save the traceback of %s", name, exc_info=True)


def run_point(sweep_dir: str, run_dir: str, threads: int | None = None) -> dict[str, str]:
    """Claim point ``run_dir`` of the sweep in ``sweep_dir`` and run it here (a Ray task or submitit job).

    Returns ``{"run_dir", "status"}``; ``status`` is ``skipped`` when another process holds the point
    or it had finished.
    """
    if threads:
        import torch

        torch.set_num_threads(threads)
    index = SweepIndex(sweep_dir)
    owner = Owner.current()
    row = index.claim(owner, run_dir)
    if row is None:
        return {"run_dir": run_dir, "status": "skipped"}
    return {"run_dir": run_dir, "status": run_claimed(index, row, owner)}
