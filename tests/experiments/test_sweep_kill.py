"""Killed sweeps, dead workers and two sweeps at once: every point runs exactly once (real processes, SIGKILL)."""
from __future__ import annotations

import json
import os
import re
import signal

from sweep_helpers import TINY_BASE, index_rows, run_main, start, wait_for, write_sweep

from sparsetime.cli import main
from sparsetime.experiments.owner import process_alive

LONG = {"epochs": 12}  # about a second per point: long enough to be killed in the middle


def rows_or_empty(sweep_dir):
    try:
        return index_rows(sweep_dir)
    except Exception:  # noqa: BLE001 - the index may not exist yet
        return []


def epochs_done(run_dir) -> int:
    """Epochs with a checkpoint so far (0 before the first)."""
    metrics = run_dir / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if (run_dir / "checkpoint.pt").is_file() and metrics.is_file() else 0


def starts(run_dir) -> list[int]:
    """The epochs training (re)started at, from the run's log."""
    return [int(e) for e in re.findall(r"starting at epoch (\d+) ", (run_dir / "train.log").read_text())]


def test_killed_sweep_resumes_running_points_and_never_retrains_finished_ones(tmp_path, capsys):
    path = write_sweep(tmp_path, grid={"sparsity.density": [0.2, 0.3], "sparsity.update_interval": [2, 4]},
                       seeds=[0], base={**TINY_BASE, **LONG})
    sweep_dir = tmp_path / "out" / "s"
    proc = start("sweep", str(path), "--workers", "2")

    def one_done_one_midway() -> bool:
        assert proc.poll() is None, f"sweep ended before it was killed: {proc.communicate()}"
        rows = rows_or_empty(sweep_dir)
        return any(r["status"] == "finished" for r in rows) and any(
            r["status"] == "running" and 1 <= epochs_done(sweep_dir / r["run_dir"]) <= 8 for r in rows)

    wait_for(one_done_one_midway, what="a finished point and one with a checkpoint")
    os.kill(proc.pid, signal.SIGKILL)  # the sweep process only: its workers must not outlive it
    proc.communicate()
    rows = index_rows(sweep_dir)
    running = [r for r in rows if r["status"] == "running"]
    wait_for(lambda: not any(process_alive(r["pid"], r["pid_start"]) for r in running), timeout=10,
             what="the workers to die with the sweep")
    finished = {r["run_dir"]: (sweep_dir / r["run_dir"] / "summary.json") for r in rows if r["status"] == "finished"}
    before = {n: (p.stat().st_mtime_ns, p.read_text()) for n, p in finished.items()}
    interrupted = [r["run_dir"] for r in running if (sweep_dir / r["run_dir"] / "checkpoint.pt").is_file()
                   and not (sweep_dir / r["run_dir"] / "summary.json").is_file()]  # not killed after its summary
    assert finished and interrupted

    assert main(["sweep", str(path), "--status"]) == 0
    status = capsys.readouterr().out
    assert all(re.search(rf" stale .*{name}", status) for name in (r["run_dir"] for r in running))

    assert run_main("-q", "sweep", str(path), "--workers", "2").returncode == 0
    after = {r["run_dir"]: r for r in index_rows(sweep_dir)}
    assert all(r["status"] == "finished" for r in after.values())
    for name, (mtime, text) in before.items():  # finished points were not trained again
        summary_path = finished[name]
        assert summary_path.stat().st_mtime_ns == mtime and summary_path.read_text() == text
        assert after[name]["attempts"] == 1 and starts(sweep_dir / name) == [0]
    for name in interrupted:  # resumed from their checkpoints, not restarted
        run = sweep_dir / name
        assert after[name]["attempts"] == 2
        resumed_at = starts(run)
        assert resumed_at[0] == 0 and len(resumed_at) == 2 and resumed_at[1] > 0
        assert "resumed from" in (run / "train.log").read_text()
        epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert epochs == list(range(1, 13))
    for name in after:
        assert json.loads((sweep_dir / name / "summary.json").read_text())["epochs"] == 12


def test_a_dead_worker_fails_its_point_and_the_sweep_goes_on(tmp_path):
    path = write_sweep(tmp_path, runs=[LONG, {"epochs": 1}, {"epochs": 3}])
    sweep_dir = tmp_path / "out" / "s"
    proc = start("sweep", str(path), "--workers", "1")

    found: list[dict] = []

    def midway() -> bool:
        assert proc.poll() is None, f"sweep ended early: {proc.communicate()}"
        found[:] = [r for r in rows_or_empty(sweep_dir) if r["status"] == "running"
                    and 1 <= epochs_done(sweep_dir / r["run_dir"]) <= 8]
        return bool(found)

    wait_for(midway, what="a point with a checkpoint")
    (victim,) = found
    os.kill(victim["pid"], signal.SIGKILL)  # the worker crashes (as under the OOM killer)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    rows = {r["run_dir"]: r for r in index_rows(sweep_dir)}
    assert rows[victim["run_dir"]]["status"] == "failed"
    assert rows[victim["run_dir"]]["error"] == "worker process died: killed by SIGKILL"
    others = [r for n, r in rows.items() if n != victim["run_dir"]]
    assert len(others) == 2 and all(r["status"] == "finished" for r in others)
    assert all(r["pid"] != victim["pid"] for r in others)  # a new worker ran them


def test_two_sweeps_at_once_run_each_point_once(tmp_path):
    path = write_sweep(tmp_path, grid={"sparsity.density": [0.1, 0.15, 0.2, 0.3], "sparsity.update_interval": [2, 4]},
                       base={**TINY_BASE, "epochs": 6})
    sweep_dir = tmp_path / "out" / "s"
    procs = [start("sweep", str(path), "--workers", "1") for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    rows = index_rows(sweep_dir)
    assert len(rows) == 8
    assert all(r["status"] == "finished" and r["attempts"] == 1 for r in rows)
    assert len({r["pid"] for r in rows}) == 2  # both sweeps' workers ran points (seconds of work to share)
    for row in rows:
        assert starts(sweep_dir / row["run_dir"]) == [0]  # trained once, by one process
        log = (sweep_dir / row["run_dir"] / "train.log").read_text()
        assert log.count("finished: test accuracy") == 1
