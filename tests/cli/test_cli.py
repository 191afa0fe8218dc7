"""The ``sparsetime`` command line: train, resume (after killing a real process), info; real data."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import pytest
import torch
import yaml

from sparsetime.cli import main
from sparsetime.data import locate_dataset
from sparsetime.train import load_checkpoint, load_config, resolve_config, run_directory

TIMING = {"seconds", "eval_seconds", "train_seconds"}
HAS_FASHION_MNIST = locate_dataset("fashion_mnist") is not None
needs_fashion_mnist = pytest.mark.skipif(not HAS_FASHION_MNIST,
                                         reason="Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")


def tiny(out, *extra: str) -> list[str]:
    return ["dataset=synthetic", "data.options.train_size=128", "data.options.test_size=64",
            "model_options.hidden=[16]", "epochs=2", "batch_size=32", "sparsity.density=0.3",
            "sparsity.update_interval=3", f"output_dir={out}", "progress=none", "device=cpu", *extra]


def run_dir_of(overrides: list[str]):
    return run_directory(resolve_config(load_config(None, overrides)))


def records(run) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_prints_accuracy_density_and_rs_then_is_idempotent(tmp_path, capsys):
    args = tiny(tmp_path)
    assert main(["train", *args]) == 0
    out = capsys.readouterr().out
    summary = json.loads((run_dir_of(args) / "summary.json").read_text())
    assert f"test accuracy:    {100 * summary['test_accuracy']:.2f}%" in out
    assert f"realised density: {summary['density']:.4f}" in out
    assert f"Rs (ITOP rate):   {summary['itop_rate']:.4f}" in out
    assert main(["train", *args]) == 0
    again = capsys.readouterr().out
    assert "already finished; nothing to do" in again
    assert f"test accuracy:    {100 * summary['test_accuracy']:.2f}%" in again


def test_config_file_plus_overrides_and_print_config(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text("sparsity:\n  method: rigl\n  density: 0.1\noptim:\n  lr: 0.05\n")
    assert main(["train", "--config", str(path), "--print-config", "optim.lr=0.07", *tiny(tmp_path)[:3]]) == 0
    out = capsys.readouterr().out
    printed = yaml.safe_load(out)
    assert printed["sparsity"]["method"] == "rigl" and printed["sparsity"]["growth"] == "gradient"
    assert printed["sparsity"]["density"] == 0.1 and printed["optim"]["lr"] == 0.07
    assert printed["dataset"] == "synthetic"
    assert "# run directory: runs/rigl-mlp-synthetic-d0.1-" in out
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "sparsity.densty=0.1"], "did you mean 'sparsity.density'"),
    (["train", "optim.name=rmsprop"], "allowed: sgd, adam, adamw"),
    (["train", "--config", "missing.yaml"], "does not exist"),
    (["resume", "no_such_run"], "not a run directory"),
])
def test_usage_errors_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparsetime: error: ") and message in err


def test_info_lists_versions_threads_and_local_datasets(capsys):
    handlers = list(logging.getLogger("sparsetime").handlers)
    assert main(["info"]) == 0
    assert logging.getLogger("sparsetime").handlers == handlers  # the console handler is detached again
    out = capsys.readouterr().out
    assert f"torch      {torch.__version__}" in out
    assert f"torch intra-op {torch.get_num_threads()}" in out
    assert "device     cpu" in out or "device     cuda" in out
    fashion = locate_dataset("fashion_mnist")
    assert f"fashion_mnist  {fashion if fashion else 'not found'}" in out
    assert "synthetic      generated on the fly" in out


def test_killed_process_resumes_to_identical_final_metrics(tmp_path):
    """Kill a real ``sparsetime train`` process mid-run, resume it, compare with a run never interrupted."""
    common = ["dataset=synthetic", "data.options.train_size=1024", "data.options.test_size=128",
              "model_options.hidden=[32]", "epochs=6", "batch_size=32", "sparsity.method=rigl",
              "sparsity.density=0.2", "sparsity.update_interval=16", "schedule.name=cosine", "progress=none",
              "device=cpu"]
    killed_args = [*common, f"output_dir={tmp_path / 'killed'}"]
    run = run_dir_of(killed_args)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-m", "sparsetime.cli", "-q", "train", *killed_args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not (run / "checkpoint.pt").exists():
            assert proc.poll() is None, f"train exited early: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "no checkpoint within the time limit"
            time.sleep(0.005)
    finally:
        proc.kill()
        proc.wait()
    assert not (run / "summary.json").exists(), "the run finished before it could be killed"
    killed_at = load_checkpoint(run / "checkpoint.pt")["epoch"]
    assert 1 <= killed_at < 6

    assert main(["-q", "resume", str(run)]) == 0
    assert main(["-q", "train", *common, f"output_dir={tmp_path / 'reference'}"]) == 0
    reference = run_dir_of([*common, f"output_dir={tmp_path / 'reference'}"])
    assert records(run) == records(reference)
    assert [r["epoch"] for r in records(run)] == list(range(1, 7))
    ours = json.loads((run / "summary.json").read_text())
    theirs = json.loads((reference / "summary.json").read_text())
    assert {k: v for k, v in ours.items() if k not in TIMING} == {k: v for k, v in theirs.items() if k not in TIMING}


@needs_fashion_mnist
def test_short_real_fashion_mnist_set_run(tmp_path, capsys):
    """SET at 98% sparsity on real Fashion-MNIST (10k training images, one epoch) learns."""
    args = ["epochs=1", "data.train_subset=10000", "sparsity.update_interval=20", f"output_dir={tmp_path}",
            "progress=none", "device=cpu"]
    assert main(["-q", "train", *args]) == 0
    summary = json.loads((run_dir_of(args) / "summary.json").read_text())
    assert summary["dense_inference_flops"] == 2 * (784 * 1000 + 1000 * 1000 + 1000 * 10)
    assert summary["density"] == pytest.approx(0.02, abs=1e-4)
    assert summary["itop_rate"] > summary["density"]  # topology updates explored new weights
    assert summary["test_accuracy"] > 0.6  # ten classes: chance is 0.1


@pytest.mark.slow
@needs_fashion_mnist
def test_default_run_finishes(tmp_path, capsys):
    """The bare ``sparsetime train`` (SET-ITOP, MLP, Fashion-MNIST, 98% sparse)."""
    assert main(["train", f"output_dir={tmp_path}", "progress=log"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy:" in out and "realised density: 0.0200" in out and "Rs (ITOP rate):" in out
    summary = json.loads(next(tmp_path.glob("*/summary.json")).read_text())
    assert summary["test_accuracy"] > 0.75


@pytest.mark.slow
@needs_fashion_mnist
@pytest.mark.parametrize("method, floor", [("dense", 0.89), ("set", 0.80)])
def test_twenty_epochs_real_fashion_mnist(tmp_path, method, floor):
    """Issue 3 real check: dense MLP 784-1000-1000-10 >= 89% after 20 epochs; SET at 98% sparsity trains."""
    args = [f"sparsity.method={method}", "epochs=20", f"output_dir={tmp_path}", "progress=log"]
    assert main(["train", *args]) == 0
    summary = json.loads((run_dir_of(args) / "summary.json").read_text())
    assert summary["test_accuracy"] >= floor
