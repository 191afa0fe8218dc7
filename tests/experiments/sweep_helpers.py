"""Tiny sweeps on the synthetic dataset, the CLI in a subprocess, and reading the index back."""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sparsetime.cli import main

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def readme_example() -> tuple[str, list[list[str]]]:
    """The README's sweep file (YAML block) and its `sparsetime` commands (bash block), as written there."""
    text = README.read_text()
    match = re.search(r"<!-- sweep-example[^>]*-->\s*```yaml\n(.*?)```\s*```bash\n(.*?)```", text, re.S)
    assert match, "README lost its sweep example"
    commands = [line.split("#", 1)[0].split()[1:] for line in match.group(2).splitlines()
                if line.startswith(".venv/bin/sparsetime ")]
    return match.group(1), commands


TINY_BASE = {"dataset": "synthetic", "data.options": {"train_size": 64, "test_size": 32}, "model": "mlp",
             "model_options.hidden": [8], "epochs": 2, "batch_size": 16, "sparsity.density": 0.3,
             "sparsity.update_interval": 2, "device": "cpu"}


def write_sweep(directory: Path, name: str = "s", **fields: Any) -> Path:
    """A sweep file in ``directory`` whose runs go to ``directory/out/<name>``."""
    data = {"name": name, "output_dir": str(directory / "out"), "base": dict(TINY_BASE), **fields}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def cli(*args: str, cwd: Path | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """``sparsetime ARGS`` in a fresh process, as a user runs it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "sparsetime.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"sparsetime {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
    return proc


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def run_main(*args: str, cwd: Path | None = None) -> Outcome:
    """``sparsetime ARGS`` through the CLI's entry point in this process (no interpreter start-up to wait for)."""
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(here)
    return Outcome(code, out.getvalue(), err.getvalue())


def start(*args: str) -> subprocess.Popen:
    """``sparsetime ARGS`` in the background, in its own process group."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "sparsetime.cli", "-q", *args], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def index_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """The ``runs`` table through plain sqlite3, as another tool reads it."""
    conn = sqlite3.connect(sweep_dir / "index.sqlite")
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY point")]
    finally:
        conn.close()


def wait_for(condition, timeout: float = 120.0, interval: float = 0.02, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def comparable(rows: list[dict[str, Any]]) -> list[tuple]:
    """What two engines must agree on: run directory, hash, overrides, seed, status and the results."""
    keys = ("run_dir", "config_hash", "overrides", "seed", "status", "test_accuracy", "best_test_accuracy",
            "itop_rate", "density", "train_flops", "epochs", "steps")
    return [tuple(r[k] for k in keys) for r in rows]
