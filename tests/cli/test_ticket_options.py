"""Lottery-ticket science options of `sparsetime lth`: criteria, restarts, frozen pruned weights, refusals."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparsetime.cli import EXIT_OK, EXIT_USAGE, main
from sparsetime.core.state import masks_from_state
from sparsetime.train import load_checkpoint
from sparsetime.train import trainer as trainer_module

SRC = Path(__file__).resolve().parents[2] / "src"


def args(out, *extra: str) -> list[str]:
    return ["-q", "lth", "dataset=synthetic", "data.options.train_size=128", "data.options.test_size=64",
            "model_options.hidden=[16]", "epochs=2", "batch_size=32", "sparsity.options.levels=1",
            "sparsity.options.fraction=0.5", f"output_dir={out}", "progress=none", "device=cpu", *extra]


def levels(out):
    (experiment,) = list(out.iterdir())
    return sorted(experiment.iterdir())


def weight_names(state):
    return sorted(k for k, v in state.items() if v.dim() == 2)


def test_small_final_criterion_keeps_the_smallest_trained_weights(tmp_path):
    assert main(args(tmp_path, "sparsity.options.criterion=small_final")) == EXIT_OK
    level0, level1 = levels(tmp_path)
    trained = load_checkpoint(level0 / "checkpoint.pt")["model"]
    names = weight_names(trained)
    flat = torch.cat([trained[n].abs().flatten() for n in names])
    keep = round(0.5 * flat.numel())
    threshold = flat.sort().values[keep - 1]
    masks = masks_from_state(load_checkpoint(level1 / "checkpoint.pt")["sparsifier"]["dynamic"])
    for n in names:
        assert torch.equal(masks[n], trained[n].abs() <= threshold), n


def test_frozen_pruned_weights_hold_their_rewind_values_resume_and_count_dense_flops(tmp_path, monkeypatch):
    extra = ("sparsity.options.pruned=frozen", "sparsity.options.supermask_eval=true")
    assert main(args(tmp_path / "ref", *extra)) == EXIT_OK
    original = trainer_module.Trainer._train_epoch

    def interrupt(self):
        if self.run.path.name.startswith("level_01") and self.epoch == 1:
            raise KeyboardInterrupt
        original(self)

    monkeypatch.setattr(trainer_module.Trainer, "_train_epoch", interrupt)
    out = tmp_path / "cut"
    main(args(out, *extra))
    monkeypatch.setattr(trainer_module.Trainer, "_train_epoch", original)
    assert main(args(out, *extra)) == EXIT_OK
    for got, ref in zip(levels(out), levels(tmp_path / "ref")):
        a, b = (load_checkpoint(d / "checkpoint.pt")["model"] for d in (got, ref))
        assert all(torch.equal(a[k], b[k]) for k in a)
    level0, level1 = levels(out)
    state = load_checkpoint(level1 / "checkpoint.pt")
    rewound, model = state["sparsifier"]["rewind"], state["model"]
    masks = masks_from_state(state["sparsifier"]["dynamic"])
    for n in weight_names(model):
        assert torch.equal(model[n][~masks[n]], rewound[n][~masks[n]]) and bool((model[n][~masks[n]] != 0).any())
    summary = json.loads((level1 / "summary.json").read_text())
    assert summary["density"] == 0.5 and summary["inference_flops"] == summary["dense_inference_flops"]
    assert 0.0 <= summary["supermask_test_accuracy"] <= 1.0


def test_random_label_pretraining_is_charged_in_the_summary(tmp_path):
    assert main(args(tmp_path, "sparsity.options.random_label_epochs=1")) == EXIT_OK
    level0, _ = levels(tmp_path)
    summary = json.loads((level0 / "summary.json").read_text())
    assert summary["random_label_flops"] == 3 * summary["dense_inference_flops"] * 128


@pytest.mark.parametrize("extra, match", [
    (["sparsity.options.criterion=largest"], "sparsity.options.criterion = 'largest' is invalid; allowed: large_final"),
    (["sparsity.options.perturb=noise", "sparsity.options.noise_scale=-0.5"],
     "sparsity.options.noise_scale = -0.5 is invalid; allowed: a number >= 0"),
    (["sparsity.options.restart=late"], "sparsity.options.restart = 'late' is invalid; allowed: rewind, reinit"),
])
def test_bad_ticket_options_are_refused_by_the_cli_in_a_subprocess(tmp_path, extra, match):
    out = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-m", "sparsetime", *args(out, *extra)], capture_output=True, text=True,
                          env=env, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == EXIT_USAGE and len(lines) == 1 and lines[0].startswith("sparsetime: error:"), proc.stderr
    assert match in lines[0]
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("extra, match", [
    (["sparsity.options.pruned=half"], "pruned = 'half' is invalid; allowed: zero, frozen"),
    (["sparsity.options.perturb=flip"], "perturb = 'flip' is invalid; allowed: signs_to_init"),
    (["sparsity.options.noise_scale=0.5"], "noise_scale only applies with sparsity.options.perturb = noise"),
    (["sparsity.options.perturb=noise", "sparsity.options.noise_scale=nan"], "noise_scale|finite|nan"),
    (["sparsity.options.restart=constant", "sparsity.options.mode=lr"], "mode = weights"),
    (["sparsity.options.random_label_epochs=-1"], "random_label_epochs = -1 is invalid"),
    (["sparsity.options.supermask_eval=maybe"], "supermask_eval"),
    (["sparsity.options.criterions=movement"], "criterions"),
])
def test_more_bad_ticket_options_exit_with_usage_error_and_write_nothing(tmp_path, capsys, extra, match):
    import re
    out = tmp_path / "runs"
    assert main(args(out, *extra)) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("sparsetime: error:") and re.search(match, err), err
    assert not out.exists() or not any(out.iterdir())
