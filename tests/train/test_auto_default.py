"""The runner's default ``sparsity.execution=auto``: ``sparsetime train`` (a subprocess, as a user
runs it) prints the engine of every layer, runs the large layer sparse with numba and with the
torch fallback (numba disabled), and reaches the metrics of the same run forced masked."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from types import SimpleNamespace
from pathlib import Path

import pytest
import torch
from torch import nn

from sparsetime.core import criteria
from sparsetime.core.execution import plan_execution
from sparsetime.train import load_config, resolve_config, train

SRC = Path(__file__).resolve().parents[2] / "src"
# synthetic data has 64 features; hidden 600 makes layers.1 a 600x600 layer (360,000 weights, above
# the auto size threshold) at density ~0.02, and layers.0 / layers.2 small enough to stay masked
ARGS = ["dataset=synthetic", "data.options.train_size=96", "data.options.test_size=48",
        "model_options.hidden=[600, 600]", "epochs=2", "batch_size=32", "sparsity.update_interval=2",
        "progress=none", "device=cpu"]


def _cli_train(out: Path, disable_numba: bool) -> tuple[str, dict]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("SPARSETIME_DISABLE_NUMBA", None)
    if disable_numba:
        env["SPARSETIME_DISABLE_NUMBA"] = "1"
    proc = subprocess.run([sys.executable, "-m", "sparsetime.cli", "train", f"output_dir={out}", *ARGS],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run = next(out.iterdir())
    return proc.stderr + proc.stdout, json.loads((run / "summary.json").read_text())


def _engines(log: str) -> dict[str, str]:
    rows = [line.split() for line in log.splitlines() if line.startswith("layers.")]
    return {row[0]: row[-1] for row in rows}


@pytest.mark.parametrize("disable_numba", [False, True], ids=["numba", "torch-fallback"])
def test_default_auto_run_prints_engines_and_matches_masked(tmp_path, disable_numba):
    log, summary = _cli_train(tmp_path / "auto", disable_numba)
    assert _engines(log) == {"layers.0.weight": "masked", "layers.1.weight": "sparse", "layers.2.weight": "masked"}
    masked = train(load_config(None, [f"output_dir={tmp_path / 'masked'}", *ARGS, "sparsity.execution=masked"]))
    for key in ("test_accuracy", "train_loss", "density", "itop_rate"):
        assert summary[key] == pytest.approx(masked.summary[key], rel=1e-4, abs=1e-6), key


def test_auto_is_the_default_and_gets_its_own_run_directory():
    auto = resolve_config(load_config(None, ARGS))
    masked = resolve_config(load_config(None, [*ARGS, "sparsity.execution=masked"]))
    assert auto.sparsity.execution == "auto"
    assert auto != masked


class _NoKernelsHere:
    """A sparse provider on a device without kernels (what CUDA looks like today)."""

    def why_not(self, model, name, param, growth):
        return None

    def supports_device(self, device):
        return False

    def prefers(self, shape, density, device):
        assert torch.device(device).type == "cpu"
        return shape[0] * shape[1] >= 1 << 18


def test_auto_without_kernels_on_the_device_stays_masked_with_a_warning():
    model = nn.Sequential(nn.Linear(1000, 1000), nn.Linear(1000, 10))
    params = {"0.weight": model[0].weight, "1.weight": model[1].weight}
    opts = SimpleNamespace(execution="auto", growth=criteria.GROWTH["random"], redistribution=False,
                           grad_accumulation=1, sparse_layers=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chosen = plan_execution(model, params, {n: 0.02 for n in params}, opts, _NoKernelsHere(), {})
    assert chosen == []
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "0.weight run masked" in messages[0] and "1.weight" not in messages[0]
