"""The runner launched by torchrun: 2 CPU processes (gloo), one writer, resume after SIGKILL.

The 2-process run must equal a single-process run with the same global batch: the same
topologies, hence the same Rs and accuracies, and losses within 1e-5 relative (each rank
averages its half of the batch and DDP averages the two halves, in float32, where one process
averages the whole batch: the sums are taken in another order).
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
TIMING = ("seconds", "eval_seconds")


def _overrides(out: Path, *extra: str) -> list[str]:
    return ["dataset=synthetic", "data.options.train_size=512", "data.options.test_size=96",
            "model_options.hidden=[64]", "epochs=3", "batch_size=16", "sparsity.density=0.3",
            "sparsity.update_interval=4", f"output_dir={out}", "progress=none", "device=cpu", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _torchrun(out: Path, *extra: str, timeout: int = 240) -> subprocess.CompletedProcess:
    done = subprocess.run([*TORCHRUN, "-m", "sparsetime", "-q", "train", *_overrides(out, *extra)],
                          capture_output=True, text=True, timeout=timeout, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _only_run(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_two_processes_write_one_run_equal_to_one_process_at_the_global_batch(tmp_path):
    done = _torchrun(tmp_path / "ddp")
    assert done.stdout.count("run directory:") == 1  # only rank 0 reports
    run = _only_run(tmp_path / "ddp")
    assert sorted(p.name for p in run.iterdir()) == [".lock", "checkpoint.pt", "config.yaml", "metrics.jsonl", "scalars.csv",
                                                     "summary.json", "train.log", "updates.jsonl"]
    assert len((run / "updates.jsonl").read_text().splitlines()) == json.loads(
        (run / "summary.json").read_text())["topology_updates"]
    metrics = _metrics(run)
    assert [m["epoch"] for m in metrics] == [1, 2, 3]  # no line written twice
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch_size"] == 32
    assert "world_size: 2" in (run / "config.yaml").read_text()

    single = subprocess.run([sys.executable, "-m", "sparsetime", "-q", "train",
                             *_overrides(tmp_path / "one", "batch_size=32")],
                            capture_output=True, text=True, timeout=240, env=_env())
    assert single.returncode == 0, single.stderr[-3000:]
    ref = _metrics(_only_run(tmp_path / "one"))
    assert run.name != _only_run(tmp_path / "one").name  # the world size is part of the run's identity
    for got, want in zip(metrics, ref, strict=True):
        assert got["itop_rate"] == want["itop_rate"] and got["density"] == want["density"]
        assert got["train_accuracy"] == want["train_accuracy"] and got["test_accuracy"] == want["test_accuracy"]
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-5)
        assert got["test_loss"] == pytest.approx(want["test_loss"], rel=1e-5)
        assert got["train_flops"] == pytest.approx(want["train_flops"], rel=1e-12)


def test_a_killed_torchrun_run_resumes_to_the_uninterrupted_result(tmp_path):
    extra = ("epochs=8", "data.options.train_size=2048", "model_options.hidden=[128]")
    _torchrun(tmp_path / "whole", *extra)
    reference = _metrics(_only_run(tmp_path / "whole"))

    out = tmp_path / "killed"
    proc = subprocess.Popen([*TORCHRUN, "-m", "sparsetime", "-q", "train", *_overrides(out, *extra)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(), start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        metrics = next(out.glob("*/metrics.jsonl"), None) if out.exists() else None
        if metrics is not None and len(metrics.read_text().splitlines()) >= 2:
            break
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks, mid-run
    proc.wait(timeout=30)
    proc.stderr.close()
    run = _only_run(out)
    assert not (run / "summary.json").exists(), "the run finished before it could be killed"
    _torchrun(out, *extra)  # the same command continues from the last checkpoint
    assert _metrics(run) == reference
