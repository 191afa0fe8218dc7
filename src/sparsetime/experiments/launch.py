"""Points of a sweep that are distributed runs: each one launched with torchrun.

A point whose config has ``world_size: N > 1`` (set in the sweep's ``base``, ``grid`` or ``runs``)
is trained by ``torchrun --standalone --nproc_per_node N -m sparsetime train --config FILE`` in a
subprocess, FILE being the point's resolved config, so the run directory is the same one the
sweep computed (the world size is part of the run's hash). The engine's worker waits for it; a
killed launch resumes like any run, from its last checkpoint, when the point is run again.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sparsetime.train.checkpoint import atomic_write_text
from sparsetime.train.config import Config, config_to_yaml
from sparsetime.train.rundir import RunDir


class LaunchError(RuntimeError):
    """A torchrun launch of a point ended with a non-zero exit code."""


def torchrun_command(config_file: Path, nproc: int) -> list[str]:
    """The command that trains the config in ``config_file`` on ``nproc`` local processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            "-m", "sparsetime", "-q", "train", "--config", str(config_file)]


def train_with_torchrun(config: Config, run_dir: Path, launch_dir: Path) -> dict:
    """Train the distributed point ``config`` (its run directory is ``run_dir``); returns its summary."""
    config_file = launch_dir / f"{run_dir.name}.yaml"
    atomic_write_text(config_file, config_to_yaml(config))
    done = subprocess.run(torchrun_command(config_file, config.world_size), capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        detail = next((line for line in reversed(lines) if "sparsetime: error" in line or "Error" in line),
                      lines[-1] if lines else "no output")
        raise LaunchError(f"torchrun --nproc_per_node {config.world_size} exited with {done.returncode}: "
                          f"{detail.strip()}")
    return RunDir(run_dir).read_summary()
