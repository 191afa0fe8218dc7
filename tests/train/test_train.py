"""Trainer, run directories, checkpoints and resume, on the synthetic dataset with tiny MLPs."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from sparsetime.train import (NonFiniteLossError, config_to_yaml, load_checkpoint, load_config, register_method,
                              resolve_config, resume, run_directory, train)
from sparsetime.train import methods as methods_module
from sparsetime.train import trainer as trainer_module
from sparsetime.train.dst_methods import DenseTraining
from sparsetime.core.state import masks_from_state

# synthetic data: 128 train / 64 test images of 1x8x8, 4 classes; MLP 64-16-4; 4 steps per epoch
IN, HID, OUT, TRAIN = 64, 16, 4, 128
METRIC_KEYS = {"epoch", "step", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr", "itop_rate",
               "density", "seconds", "train_flops"}
SUMMARY_KEYS = {"test_accuracy", "best_test_accuracy", "density", "itop_rate", "epochs", "train_seconds",
                "train_flops"}
TIMING = {"seconds", "eval_seconds", "train_seconds"}


def tiny(tmp_path, *extra: str):
    return load_config(None, [
        "dataset=synthetic", f"data.options.train_size={TRAIN}", "data.options.test_size=64",
        f"model_options.hidden=[{HID}]", "epochs=2", "batch_size=32", "sparsity.density=0.3",
        "sparsity.update_interval=3", f"output_dir={tmp_path}", "progress=none", "device=cpu", *extra])


def without_timing(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING}


def test_run_directory_holds_every_artifact(tmp_path):
    config = tiny(tmp_path, "data.validation_size=32")
    result = train(config)
    run = result.run_dir
    assert run == run_directory(resolve_config(config))
    assert {p.name for p in run.iterdir()} == {"config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt",
                                              "train.log", "updates.jsonl", "scalars.csv", ".lock"}
    assert load_config(run / "config.yaml") == resolve_config(config)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert [r["step"] for r in records] == [3, 6]  # 96 training examples left after the validation split
    assert all(METRIC_KEYS | {"validation_accuracy", "validation_loss"} <= set(r) for r in records)
    summary = json.loads((run / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary == result.summary
    assert summary["test_accuracy"] == records[-1]["test_accuracy"]
    assert summary["best_test_accuracy"] == max(r["test_accuracy"] for r in records)
    assert summary["validation_accuracy"] == records[-1]["validation_accuracy"]
    assert summary["epochs"] == 2 and summary["steps"] == 6
    assert "epoch 2/2" in (run / "train.log").read_text()


def test_set_run_keeps_masks_and_counts_density_and_flops(tmp_path):
    result = train(tiny(tmp_path))
    state = load_checkpoint(result.run_dir / "checkpoint.pt")
    masks = masks_from_state(state["sparsifier"])
    assert set(masks) == {"layers.0.weight", "layers.1.weight"}
    for name, mask in masks.items():
        weight = state["model"][name]
        assert torch.equal(weight * ~mask, torch.zeros_like(weight))
    active = sum(int(m.sum()) for m in masks.values())
    assert result.summary["density"] == pytest.approx(active / (IN * HID + HID * OUT))
    assert 0.25 < result.summary["density"] < 0.35
    rs = result.summary["itop_rate"]
    assert result.summary["density"] < rs <= 1.0  # 2 topology updates explored new weights
    # SET: 3 f_S per example; f_S = 2 x active weights of an MLP (no layer changes its count)
    assert result.summary["train_flops"] == pytest.approx(3 * 2 * active * TRAIN * 2)
    assert result.summary["inference_flops"] == pytest.approx(2 * active)
    assert result.summary["dense_inference_flops"] == 2 * (IN * HID + HID * OUT)
    assert result.summary["test_accuracy"] > 0.5  # 4 classes: chance is 0.25


def test_dense_run_and_train_subset(tmp_path):
    result = train(tiny(tmp_path, "sparsity.method=dense", "data.train_subset=64"))
    s = result.summary
    assert (s["density"], s["itop_rate"], s["steps"]) == (1.0, 1.0, 4)  # 64 examples: 2 steps per epoch
    assert s["train_flops"] == pytest.approx(3 * 2 * (IN * HID + HID * OUT) * 64 * 2)
    assert "topology_updates" not in s


def test_finished_run_is_not_trained_again(tmp_path, monkeypatch):
    config = tiny(tmp_path, "epochs=1")
    first = train(config)
    stamp = (first.run_dir / "checkpoint.pt").stat().st_mtime_ns

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run must not build a trainer")

    monkeypatch.setattr("sparsetime.train.run.Trainer", refuse)
    again = train(tiny(tmp_path, "epochs=1", "progress=log"))  # a display key: same run
    assert again.already_finished and again.run_dir == first.run_dir
    assert again.summary == first.summary
    assert (first.run_dir / "checkpoint.pt").stat().st_mtime_ns == stamp


def test_extend_scales_epochs_and_milestones(tmp_path):
    result = train(tiny(tmp_path, "epochs=1", "extend=2", "schedule.name=multistep", "schedule.milestones=[0.5]",
                        "optim.lr=0.1"))
    records = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[0]["lr"] == pytest.approx(0.1)
    assert records[1]["lr"] == pytest.approx(0.01)  # milestone at half of the extended 8 steps


def _interrupt_after(monkeypatch, steps: int) -> None:
    calls = {"n": 0}
    original = trainer_module.EpochProgress.advance

    def advance(self):
        original(self)
        calls["n"] += 1
        if calls["n"] == steps:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module.EpochProgress, "advance", advance)


def test_resume_mid_epoch_is_bit_identical(tmp_path, monkeypatch):
    extra = ["epochs=3", "sparsity.method=rigl", "sparsity.update_interval=2", "optim.name=adam", "optim.lr=0.01",
             "schedule.name=cosine", "schedule.warmup_epochs=1", "label_smoothing=0.1"]
    reference = train(tiny(tmp_path / "a", *extra))
    _interrupt_after(monkeypatch, 6)  # in the middle of epoch 2
    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path / "b", *extra))
    monkeypatch.undo()
    run = run_directory(resolve_config(tiny(tmp_path / "b", *extra)))
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 1
    assert not (run / "summary.json").exists()
    resumed = resume(run)
    assert without_timing(resumed.summary) == without_timing(reference.summary)
    mine = [without_timing(json.loads(x)) for x in (run / "metrics.jsonl").read_text().splitlines()]
    theirs = [without_timing(json.loads(x)) for x in (reference.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert mine == theirs
    a = load_checkpoint(reference.run_dir / "checkpoint.pt")
    b = load_checkpoint(run / "checkpoint.pt")
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name


def test_resume_refuses_result_changing_overrides_and_edited_configs(tmp_path):
    result = train(tiny(tmp_path, "epochs=1"))
    with pytest.raises(ValueError, match="'optim.lr' would change the results"):
        resume(result.run_dir, ["optim.lr=0.5"])
    (result.run_dir / "summary.json").unlink()  # pretend it was interrupted
    edited = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    edited["seed"] = 5
    (result.run_dir / "config.yaml").write_text(yaml.safe_dump(edited))
    with pytest.raises(ValueError, match="config.yaml was edited"):
        resume(result.run_dir)
    with pytest.raises(ValueError, match="not a run directory"):
        resume(tmp_path / "nowhere")


class Poison(DenseTraining):
    """A plugged-in method that counts its steps and writes NaN into a weight at one step."""

    def __init__(self, ctx, at_step: int) -> None:
        self.ctx, self.at_step, self.calls = ctx, at_step, 0

    def step(self) -> None:
        self.calls += 1
        if self.calls == self.at_step:
            with torch.no_grad():
                self.ctx.model.layers[0].weight.fill_(float("nan"))

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]


def test_plugged_method_and_nan_loss_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(methods_module, "_METHODS", dict(methods_module._METHODS))
    seen = {}

    def build(ctx):
        seen["ctx"] = ctx
        return Poison(ctx, at_step=6)  # the 2nd step of epoch 2

    register_method("poison", build, defaults={"growth": "none"})
    config = tiny(tmp_path, "sparsity.method=poison", "epochs=3")
    with pytest.raises(NonFiniteLossError, match=r"became nan in epoch 2.*after epoch 1\) is kept"):
        train(config)
    ctx = seen["ctx"]
    assert (ctx.total_steps, ctx.steps_per_epoch, ctx.sparsity.growth) == (12, 4, "none")
    x, y = next(ctx.train_batches())
    assert x.shape == (32, 1, 8, 8) and y.shape == (32,)
    run = run_directory(resolve_config(config))
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["epoch"] == 1 and state["sparsifier"] == {"calls": 4}
    assert torch.isfinite(state["model"]["layers.0.weight"]).all()
    assert not (run / "summary.json").exists()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_resolved_config_file_is_complete(tmp_path):
    result = train(tiny(tmp_path, "epochs=1", "sparsity.method=snfs"))
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert saved["sparsity"]["growth"] == "momentum" and saved["sparsity"]["redistribution"] is True
    assert saved["model_options"] == {"hidden": [HID]}
    assert (result.run_dir / "config.yaml").read_text() == config_to_yaml(resolve_config(tiny(
        tmp_path, "epochs=1", "sparsity.method=snfs")))


def test_resume_after_kill_between_last_checkpoint_and_summary(tmp_path):
    result = train(tiny(tmp_path, "epochs=1"))
    run = result.run_dir
    (run / "summary.json").unlink()
    (run / "metrics.jsonl").write_text("")  # killed before the metrics of the last epoch were written
    again = resume(run)
    assert not again.already_finished
    assert again.summary == result.summary
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1]
