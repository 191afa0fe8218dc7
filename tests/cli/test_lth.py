"""`sparsetime lth`: every level a run directory, resumable, idempotent, bad input rejected."""
from __future__ import annotations

import json
import re

import pytest
import torch

from sparsetime.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main
from sparsetime.train import load_checkpoint
from sparsetime.train import trainer as trainer_module
from sparsetime.core.state import masks_from_state

N_WEIGHTS = 64 * 16 + 16 * 4  # MLP 64-16-4
RUN_FILES = {"config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt", "train.log"}


def args(out, *extra: str) -> list[str]:
    return ["-q", "lth", "dataset=synthetic", "data.options.train_size=128", "data.options.test_size=64",
            "model_options.hidden=[16]", "epochs=2", "batch_size=32", "sparsity.options.levels=1",
            "sparsity.options.fraction=0.5", f"output_dir={out}", "progress=none", "device=cpu", *extra]


def level_dirs(out):
    (experiment,) = list(out.iterdir())
    return sorted(experiment.iterdir())


def test_two_levels_prune_half_of_the_trained_weights_by_magnitude(tmp_path, capsys):
    assert main(args(tmp_path)) == EXIT_OK
    table = capsys.readouterr().out
    level0, level1 = level_dirs(tmp_path)
    assert level0.name.startswith("level_00-") and level1.name.startswith("level_01-")
    for run in (level0, level1):
        assert RUN_FILES <= {p.name for p in run.iterdir()}
    s0 = json.loads((level0 / "summary.json").read_text())
    s1 = json.loads((level1 / "summary.json").read_text())
    assert s0["density"] == 1.0 and s1["density"] == pytest.approx(round(0.5 * N_WEIGHTS) / N_WEIGHTS)
    assert f"{100 * s1['test_accuracy']:.2f}%" in table and "0.5000" in table
    # independent magnitude pruning of level 0's trained weights: keep the 544 largest |w| over both layers
    trained = load_checkpoint(level0 / "checkpoint.pt")["model"]
    names = ["net.0.weight", "net.2.weight"] if "net.0.weight" in trained else sorted(
        k for k, v in trained.items() if v.dim() == 2)
    flat = torch.cat([trained[n].abs().flatten() for n in names])
    threshold = flat.sort(descending=True).values[round(0.5 * N_WEIGHTS) - 1]
    masks = masks_from_state(load_checkpoint(level1 / "checkpoint.pt")["sparsifier"]["dynamic"])
    for n in names:
        assert torch.equal(masks[n], trained[n].abs() >= threshold), n


def test_controls_option_adds_control_runs_next_to_the_levels(tmp_path, capsys):
    assert main(args(tmp_path, "sparsity.options.controls=[random_mask]")) == EXIT_OK
    table = capsys.readouterr().out
    level0, level1, control = level_dirs(tmp_path)
    assert control.name.startswith("level_01_random_mask-") and RUN_FILES <= {p.name for p in control.iterdir()}
    summary = json.loads((control / "summary.json").read_text())
    assert summary["density"] == json.loads((level1 / "summary.json").read_text())["density"]
    assert re.search(r"random_mask\s+1\s+0\.5000\s+0\.5000", table) and str(control) in table
    ticket = masks_from_state(load_checkpoint(level1 / "checkpoint.pt")["sparsifier"]["dynamic"])
    masks = masks_from_state(load_checkpoint(control / "checkpoint.pt")["sparsifier"]["dynamic"])
    assert {n: int(m.sum()) for n, m in masks.items()} == {n: int(m.sum()) for n, m in ticket.items()}
    assert any(not torch.equal(masks[n], ticket[n]) for n in ticket)


def test_interrupted_experiment_resumes_and_skips_finished_levels(tmp_path, monkeypatch, capsys):
    assert main(args(tmp_path / "reference")) == EXIT_OK
    original = trainer_module.Trainer._train_epoch

    def interrupt(self):
        if self.run.path.name.startswith("level_01") and self.epoch == 1:
            raise KeyboardInterrupt
        original(self)

    monkeypatch.setattr(trainer_module.Trainer, "_train_epoch", interrupt)
    out = tmp_path / "interrupted"
    assert main(args(out)) == EXIT_INTERRUPTED
    level0, level1 = level_dirs(out)
    assert (level0 / "summary.json").is_file() and not (level1 / "summary.json").is_file()
    level0_log = (level0 / "train.log").read_text()
    monkeypatch.setattr(trainer_module.Trainer, "_train_epoch", original)
    capsys.readouterr()
    assert main(args(out)) == EXIT_OK
    first = capsys.readouterr().out
    assert (level0 / "train.log").read_text() == level0_log  # level 0 was not touched again
    assert "resumed from" in (level1 / "train.log").read_text()
    for got, ref in zip(level_dirs(out), level_dirs(tmp_path / "reference")):
        a = json.loads((got / "summary.json").read_text())
        b = json.loads((ref / "summary.json").read_text())
        assert a["test_accuracy"] == b["test_accuracy"] and a["density"] == b["density"]
        ma = load_checkpoint(got / "checkpoint.pt")["model"]
        mb = load_checkpoint(ref / "checkpoint.pt")["model"]
        assert all(torch.equal(ma[k], mb[k]) for k in ma)
    # a third run is a no-op with the same table
    summaries = [(d / "summary.json").read_text() for d in level_dirs(out)]
    assert main(args(out)) == EXIT_OK
    assert capsys.readouterr().out.splitlines()[-2:] == first.splitlines()[-2:]
    assert [(d / "summary.json").read_text() for d in level_dirs(out)] == summaries


@pytest.mark.parametrize("extra, match", [
    (["sparsity.options.fraction=1"], "fraction"),
    (["sparsity.options.fraction=-0.2"], "fraction"),
    (["sparsity.options.fraction=0"], "fraction"),
    (["sparsity.options.levels=-1"], "levels"),
    (["sparsity.options.controls=[shuffle]"], "controls"),
    (["sparsity.options.rewind_step=100"], "rewind_step"),
    (["sparsity.options.mode=late"], "mode"),
    (["sparsity.options.mode=finetune", "schedule.name=cosine"], "min_lr"),
    (["sparsity.dense_first=true", "sparsity.dense_last=true"], "sparse|layer"),
])
def test_bad_lth_input_exits_with_usage_error_and_writes_nothing(tmp_path, capsys, extra, match):
    out = tmp_path / "runs"
    assert main(args(out, *extra)) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("sparsetime: error:") and re.search(match, err), err
    assert not out.exists() or not any(out.iterdir())
