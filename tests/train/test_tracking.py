"""Scalar tracking: scalars.csv always, TensorBoard on logging.tensorboard=true; resume-safe; not hashed."""
from __future__ import annotations

import csv
import json
import sys

import pytest

from sparsetime.cli import main
from sparsetime.train import load_config, resolve_config, resume, run_directory, train
from sparsetime.train.config_schema import LoggingConfig
from sparsetime.train.tracking import RunTracker, read_scalars

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def tiny_overrides(tmp_path, *extra: str) -> list[str]:
    return ["dataset=synthetic", "data.options.train_size=128", "data.options.test_size=64",
            "model_options.hidden=[16]", "epochs=3", "batch_size=32", "sparsity.density=0.3",
            "sparsity.update_interval=3", f"output_dir={tmp_path}", "progress=none", "device=cpu", *extra]


def tensorboard_scalars(run) -> dict[str, list[tuple[int, float]]]:
    acc = event_accumulator.EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def csv_scalars(run) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for step, tag, value in read_scalars(run / "scalars.csv"):
        out.setdefault(tag, []).append((step, value))
    return out


def test_tensorboard_and_csv_hold_the_runs_scalars(tmp_path):
    result = train(load_config(None, tiny_overrides(tmp_path, "logging.tensorboard=true")))
    run = result.run_dir
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    updates = [json.loads(line) for line in (run / "updates.jsonl").read_text().splitlines()]
    board, table = tensorboard_scalars(run), csv_scalars(run)
    steps = [r["step"] for r in records]
    for key, tag in (("train_loss", "train/loss"), ("test_accuracy", "test/accuracy"), ("lr", "train/lr"),
                     ("density", "sparsity/density"), ("itop_rate", "sparsity/itop_rate")):
        assert table[tag] == [(s, r[key]) for s, r in zip(steps, records)]
        assert [s for s, _ in board[tag]] == steps
        assert [v for _, v in board[tag]] == pytest.approx([r[key] for r in records], rel=1e-6)  # float32 in events
    assert table["sparsity/replaced_fraction"] == [(u["step"], u["replaced_fraction"]) for u in updates]
    assert [s for s, _ in board["sparsity/replaced_fraction"]] == [u["step"] for u in updates] == [3, 6, 9, 12]
    for layer in result.summary["layers"]:  # per-layer Rs at the last epoch = the summary's
        tag = "sparsity/itop_rate/" + layer["name"]
        assert table[tag][-1] == (steps[-1], layer["itop_rate"]) and len(table[tag]) == 3
        assert board[tag][-1][1] == pytest.approx(layer["itop_rate"], rel=1e-6)
    with (run / "scalars.csv").open(newline="") as fh:
        assert next(csv.reader(fh)) == ["step", "tag", "value"]


def test_logging_section_does_not_change_the_run_directory(tmp_path):
    plain = run_directory(resolve_config(load_config(None, tiny_overrides(tmp_path))))
    logged = run_directory(resolve_config(load_config(None, tiny_overrides(tmp_path, "logging.tensorboard=true"))))
    assert plain == logged


def test_a_resumed_run_writes_the_same_csv_as_an_uninterrupted_one(tmp_path, interrupt_at_epoch):
    whole = train(load_config(None, tiny_overrides(tmp_path / "a")))
    interrupt_at_epoch(2)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(None, tiny_overrides(tmp_path / "b", "logging.tensorboard=true")))
    interrupt_at_epoch(None)
    resumed = resume(next((tmp_path / "b").iterdir()))
    assert (resumed.run_dir / "scalars.csv").read_text() == (whole.run_dir / "scalars.csv").read_text()
    board = tensorboard_scalars(resumed.run_dir)
    assert [s for s, _ in board["test/accuracy"]] == [4, 8, 12]


def test_rows_after_the_checkpoint_are_dropped_on_resume(tmp_path):
    """A run killed after writing epoch 2's scalars but before its checkpoint resumes from step 4."""
    def record(step, acc):
        return {"step": step, "train_loss": 1.0, "test_accuracy": acc, "lr": 0.1, "density": 0.5, "itop_rate": 0.6}

    layers = [{"name": "fc.weight", "itop_rate": 0.6}, {"name": "other.weight", "itop_rate": None}]
    first = RunTracker(tmp_path, LoggingConfig(tensorboard=True), 0)
    first.epoch_end(record(4, 0.25), [{"step": 2, "replaced_fraction": 0.1}], layers)
    first.epoch_end(record(8, 0.5), [{"step": 2, "replaced_fraction": 0.1}, {"step": 6, "replaced_fraction": 0.2}],
                    layers)
    first.close()
    second = RunTracker(tmp_path, LoggingConfig(tensorboard=True), 4)
    second.epoch_end(record(8, 0.75), [{"step": 2, "replaced_fraction": 0.1}, {"step": 7, "replaced_fraction": 0.3}],
                     layers)
    second.close()
    table = csv_scalars(tmp_path)
    assert table["test/accuracy"] == [(4, 0.25), (8, 0.75)]
    assert table["sparsity/replaced_fraction"] == [(2, 0.1), (7, 0.3)]
    assert table["sparsity/itop_rate/fc.weight"] == [(4, 0.6), (8, 0.6)]
    assert "sparsity/itop_rate/other.weight" not in table and "validation/loss" not in table
    board = tensorboard_scalars(tmp_path)
    assert board["test/accuracy"] == [(4, 0.25), (8, 0.75)]  # purged the step-8 event of the first writer
    assert board["sparsity/replaced_fraction"] == [(2, pytest.approx(0.1)), (7, pytest.approx(0.3))]


def test_missing_tensorboard_is_a_one_line_error_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert main(["train", *tiny_overrides(tmp_path, "logging.tensorboard=true")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the run's log lines
    assert last.startswith("sparsetime: error: config key 'logging.tensorboard' = True needs the tensorboard package")
    assert "pip install 'sparsetime[tensorboard]'" in last
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_an_unreadable_scalars_file_is_started_afresh(tmp_path, caplog):
    (tmp_path / "scalars.csv").write_text("step,tag,value\n4,test/accuracy,not-a-number\n")
    tracker = RunTracker(tmp_path, LoggingConfig(), 4)
    assert tracker.rows == [] and "is not a scalars file" in caplog.text
    tracker.epoch_end({"step": 8, "test_accuracy": 0.5}, None, [])
    assert read_scalars(tmp_path / "scalars.csv") == [(8, "test/accuracy", 0.5)]
