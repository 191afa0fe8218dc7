"""Entry points: train a run from a config, resume one from its directory.

Runs are idempotent: a run directory is named by the hash of its resolved config; a finished
run (one with ``summary.json``) is not trained again, and an interrupted one continues from its
last checkpoint.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsetime.data.fingerprint import dataset_fingerprint, fingerprint_differences

from .allocator import retain_freed_memory
from .config import NON_RESULT_KEYS, Config, apply_overrides, config_hash, run_directory
from .distributed import Distributed, setup
from .run_lock import RunLockedError, run_lock
from .logs import log_to_file
from .methods import get_method
from .resolve import resolve_config
from .rundir import RunDir
from .trainer import Trainer, check_start_step, load_run_checkpoint

log = logging.getLogger(__name__)
RESUME_KEYS = tuple(k for k in NON_RESULT_KEYS if k not in ("name", "output_dir", "data_fingerprint"))


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``run_dir`` is where it can be resumed from."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir


@dataclass
class RunResult:
    """Where a run lives, its summary, and whether it had already finished before this call."""

    run_dir: Path
    summary: dict[str, Any]
    already_finished: bool = False


def train(config: Config) -> RunResult:
    """Train the run described by ``config`` in ``<output_dir>/<name>-<hash>``.

    A finished run is left alone (its summary is returned); an interrupted one is resumed. Under
    torchrun every process calls this; ``world_size`` is set from the launch (the global batch is
    ``batch_size * world_size``), and rank 0 alone writes the run directory.
    """
    place = setup(config.device)
    if config.world_size not in (1, place.world_size):
        raise ValueError(f"config key 'world_size' = {config.world_size} but this run was launched with "
                         f"{place.world_size} process(es); it is set by the launch: use torchrun --nproc_per_node")
    config = resolve_config(dataclasses.replace(config, world_size=place.world_size))
    return _execute(config, RunDir(run_directory(config)), place)


def resume(run_dir: str | Path, overrides: Iterable[str] = ()) -> RunResult:
    """Continue the run in ``run_dir`` from its last checkpoint (from scratch if it has none).

    ``overrides`` may only change keys that do not affect results (device, progress, ...).
    """
    run = RunDir(run_dir)
    config = run.read_config()
    overrides = list(overrides)
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key not in RESUME_KEYS:
            raise ValueError(f"resume can only override {', '.join(RESUME_KEYS)}; {key!r} would change the "
                             "results or the run's location (start a new run with `sparsetime train` instead)")
    place = setup(config.device)
    if config.world_size != place.world_size:
        raise ValueError(f"run {str(run.path)!r} was trained by {config.world_size} process(es) (global batch "
                         f"{config.batch_size * config.world_size}); resume it with torchrun --nproc_per_node "
                         f"{config.world_size} (this launch has {place.world_size})")
    return _execute(resolve_config(apply_overrides(config, overrides)), run, place)


def _check_output_dir(path: Path) -> None:
    """ValueError when runs cannot be written under ``path`` (a file, or a folder not writable)."""
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(f"output_dir {str(path)!r} cannot hold run directories: {str(folder)!r} is a file")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise ValueError(f"output_dir {str(path)!r} is not writable ({str(folder)!r} refuses new files)")
            return


def _check_same_data(config: Config, run: RunDir, current: dict[str, Any]) -> None:
    """ValueError when the run directory was trained on other dataset files than those found now."""
    if not run.config_path.is_file():
        return
    saved = run.read_config().data_fingerprint
    diffs = fingerprint_differences(saved, current) if saved and current else []
    if diffs:
        raise ValueError(f"run {str(run.path)!r} was trained on other {config.dataset} files than those found now "
                         f"({'; '.join(diffs)}); point data_dir at the data it was trained on, or train a new run "
                         "under another output_dir")


def _execute(config: Config, run: RunDir, place: Distributed) -> RunResult:
    retain_freed_memory()  # activation-sized blocks are reused every step: no page faults for them
    fingerprint = dataset_fingerprint(config.dataset, config.data_dir)
    _check_same_data(config, run, fingerprint)
    config = dataclasses.replace(config, data_fingerprint=fingerprint or dict(config.data_fingerprint))
    finished = place.broadcast_object(run.is_finished())  # rank 0 decides for every rank
    if finished:
        summary = run.read_summary()
        check_start_step(run, int(summary.get("start_step", 0)),
                         get_method(config.sparsity.method).first_step(config.sparsity))
        log.info("run %s already finished; nothing to do", run.path)
        return RunResult(run.path, summary, already_finished=True)
    _check_output_dir(run.path.parent)
    created = place.broadcast_object(not run.path.exists())
    if place.is_main:
        run.path.mkdir(parents=True, exist_ok=True)
    place.barrier()
    trainer = None
    try:
        with run_lock(run.path) if place.is_main else contextlib.nullcontext(), \
                log_to_file(run.log_path) if place.is_main else contextlib.nullcontext():
            checkpoint = load_run_checkpoint(run)  # every rank reads rank 0's file (a shared filesystem)
            if checkpoint is None and place.is_main:
                run.write_config(config)
            log.info("config %s (hash %s)", run.config_path, config_hash(config))
            trainer = Trainer(config, run, checkpoint, place)
            if not fingerprint and place.is_main:  # the data was downloaded while building: record it now
                config = dataclasses.replace(config, data_fingerprint=dataset_fingerprint(config.dataset,
                                                                                          config.data_dir))
                run.write_config(config)
            summary = trainer.fit()
    except KeyboardInterrupt as exc:
        raise RunInterrupted(run.path) from exc
    except RunLockedError:
        raise
    except Exception:
        if created and trainer is None and place.is_main:  # found while building the run: leave nothing behind
            shutil.rmtree(run.path, ignore_errors=True)
        raise
    return RunResult(run.path, summary)
