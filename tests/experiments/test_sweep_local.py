"""The local engine through the CLI: 2 workers, failing points, the index against the run directories, --status."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sweep_helpers import index_rows, run_main, summary, write_sweep

from sparsetime.cli import main
from sparsetime.experiments.engines import threads_per_worker
from sparsetime.train import config_hash, load_config

RUNS = [{"optim.lr": 0.01}, {"data.options.noise": -1}, {"optim.lr": 1e12}]  # good, bad at build time, NaN loss


@pytest.fixture(scope="module")
def failing_sweep(tmp_path_factory):
    """One sweep of 12 points (4 good, 4 refused when their data is built, 4 with a NaN loss), 2 workers."""
    tmp = tmp_path_factory.mktemp("local")
    path = write_sweep(tmp, grid={"sparsity.density": [0.2, 0.3]}, runs=RUNS, seeds=[0, 1])
    return path, tmp / "out" / "s", run_main("sweep", str(path), "--workers", "2")


def kind(row: dict) -> str:
    overrides = json.loads(row["overrides"])
    return "build" if "data.options.noise" in overrides else "nan" if overrides["optim.lr"] > 1 else "good"


def test_failing_points_are_recorded_and_the_rest_finish(failing_sweep):
    _, sweep_dir, proc = failing_sweep
    assert proc.returncode == 1, proc.stderr  # some points failed
    rows = index_rows(sweep_dir)
    assert len(rows) == 12
    by_kind: dict[str, list[dict]] = {}
    for row in rows:
        by_kind.setdefault(kind(row), []).append(row)
    assert all(r["status"] == "finished" and r["error"] is None for r in by_kind["good"])
    assert all(r["status"] == "failed" for r in by_kind["build"] + by_kind["nan"])
    assert all(r["error"] == "ValueError: noise must be >= 0, got -1" for r in by_kind["build"])
    assert all(r["error"].startswith("NonFiniteLossError: training loss became ") and "\n" not in r["error"]
               for r in by_kind["nan"])
    for row in by_kind["build"] + by_kind["nan"]:
        assert "Traceback" in (sweep_dir / "errors" / f"{row['run_dir']}.txt").read_text()
    assert "4 finished, 8 failed" in proc.stdout


def test_two_workers_ran_the_points(failing_sweep):
    _, sweep_dir, proc = failing_sweep
    assert "local engine: 2 worker(s) x 1 thread(s)" in proc.stderr  # 2 cores: 1 torch thread each
    pids = {r["pid"] for r in index_rows(sweep_dir)}
    assert 1 <= len(pids) <= 2 and all(p is not None and p != os.getpid() for p in pids)
    assert threads_per_worker(2, cores=2) == 1 and threads_per_worker(1, cores=2) == 2
    assert threads_per_worker(3, cores=8) == 2


def test_index_matches_the_run_directories(failing_sweep):
    _, sweep_dir, _ = failing_sweep
    rows = index_rows(sweep_dir)
    on_disk = {p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name != "errors"}
    assert on_disk == {r["run_dir"] for r in rows if kind(r) != "build"}  # a run refused at build leaves no dir
    for row in rows:
        run = sweep_dir / row["run_dir"]
        if row["status"] == "finished":
            s = summary(run)
            for column in ("test_accuracy", "best_test_accuracy", "itop_rate", "density", "train_flops",
                           "train_seconds", "epochs", "steps", "topology_updates"):
                assert row[column] == s[column], column
            config = load_config(run / "config.yaml")
            assert row["config_hash"] == config_hash(config) == run.name.rsplit("-", 1)[1] == s["config_hash"]
            assert row["seed"] == config.seed
            assert config.sparsity.density == json.loads(row["overrides"])["sparsity.density"]
            assert row["started_at"] <= row["finished_at"]
        elif kind(row) == "nan":
            assert not (run / "summary.json").exists() and row["test_accuracy"] is None


def test_status_prints_every_point_and_its_state(failing_sweep, capsys):
    path, _, _ = failing_sweep
    assert main(["sweep", str(path), "--status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["#", "sparsity.density", "optim.lr", "data.options.noise"]
    assert len(lines) == 1 + 12 + 1
    assert sum(" finished " in line for line in lines[1:-1]) == 4
    assert sum("ValueError: noise must be >= 0, got -1" in line for line in lines[1:-1]) == 4
    assert lines[-1].endswith("0 pending, 0 running, 4 finished, 8 failed")


def test_rerun_skips_finished_points_and_retries_failed_ones_only_when_asked(failing_sweep):
    path, sweep_dir, _ = failing_sweep
    before = {r["run_dir"]: r for r in index_rows(sweep_dir)}
    mtimes = {n: (sweep_dir / n / "summary.json").stat().st_mtime_ns for n, r in before.items()
              if r["status"] == "finished"}
    assert main(["-q", "sweep", str(path), "--workers", "2"]) == 1  # nothing to run: no worker starts
    again = {r["run_dir"]: r for r in index_rows(sweep_dir)}
    assert again == before  # nothing ran
    assert main(["-q", "sweep", str(path), "--retry-failed"]) == 1
    retried = {r["run_dir"]: r for r in index_rows(sweep_dir)}
    for name, row in retried.items():
        assert row["attempts"] == before[name]["attempts"] + (row["status"] == "failed")
    assert mtimes == {n: (sweep_dir / n / "summary.json").stat().st_mtime_ns for n in mtimes}


def test_dry_run_lists_points_and_writes_nothing(tmp_path, capsys):
    path = write_sweep(tmp_path, grid={"sparsity.density": [0.2, 0.3]}, seeds=[0, 1])
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + 4 + 1 and out[-1] == "4 points; nothing was written (dry run)"
    assert all(line.rstrip().endswith(" run") for line in out[1:-1])
    assert "sparsity.density=0.3 seed=1" in out[4] and str(Path(tmp_path / "out" / "s")) in out[4]
    assert main(["sweep", str(path), "--status"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("4 pending, 0 running, 0 finished, 0 failed")
    assert not (tmp_path / "out").exists()
