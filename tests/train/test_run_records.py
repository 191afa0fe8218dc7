"""What a run records for reports: Rs after every topology update, per-layer density and Rs at the end."""
from __future__ import annotations

import json

import pytest

from sparsetime.cli import main
from sparsetime.core.state import masks_from_state
from sparsetime.train import load_checkpoint, load_config, resolve_config, run_directory


def tiny(out, *extra: str) -> list[str]:
    return ["dataset=synthetic", "data.options.train_size=128", "data.options.test_size=64",
            "model_options.hidden=[16]", "epochs=2", "batch_size=32", "sparsity.density=0.3",
            "sparsity.update_interval=3", f"output_dir={out}", "progress=none", "device=cpu", *extra]


def trained(tmp_path, *extra: str):
    args = tiny(tmp_path, *extra)
    assert main(["-q", "train", *args]) == 0
    return run_directory(resolve_config(load_config(None, args)))


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_updates_jsonl_has_one_record_per_topology_update(tmp_path):
    run = trained(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    updates = lines(run / "updates.jsonl")
    steps_per_epoch, total_steps = 128 // 32, 2 * 128 // 32
    assert [u["step"] for u in updates] == [t for t in range(1, total_steps + 1) if t % 3 == 0]
    assert [u["epoch"] for u in updates] == [u["step"] / steps_per_epoch for u in updates]
    assert summary["topology_updates"] == len(updates)
    rates = [u["itop_rate"] for u in updates]
    assert rates == sorted(rates) and rates[-1] == pytest.approx(summary["itop_rate"])  # Rs only changes at updates
    assert all(u["density"] == pytest.approx(summary["density"]) for u in updates)
    assert all(0 <= u["replaced_fraction"] <= u["drop_fraction"] + 1e-9 for u in updates)


def test_summary_layers_match_the_checkpointed_masks(tmp_path):
    run = trained(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    masks = masks_from_state(load_checkpoint(run / "checkpoint.pt")["sparsifier"])
    layers = {row["name"]: row for row in summary["layers"]}
    assert set(layers) == set(masks)
    for name, mask in masks.items():
        assert layers[name]["shape"] == list(mask.shape)
        assert layers[name]["active"] == int(mask.sum())
        assert layers[name]["density"] == pytest.approx(float(mask.float().mean()))
    size = sum(r["size"] for r in layers.values())
    assert sum(r["active"] for r in layers.values()) / size == pytest.approx(summary["density"])
    assert sum(r["itop_rate"] * r["size"] for r in layers.values()) / size == pytest.approx(summary["itop_rate"])


def test_resume_after_the_last_checkpoint_rewrites_updates_from_it(tmp_path):
    run = trained(tmp_path)
    expected = (run / "updates.jsonl").read_text()
    (run / "summary.json").unlink()  # as if killed after the last checkpoint, before the summary
    (run / "updates.jsonl").write_text(expected.splitlines()[0] + "\n")
    assert main(["-q", "resume", str(run)]) == 0
    assert (run / "updates.jsonl").read_text() == expected


def test_gradual_pruning_reports_layer_densities_without_rs(tmp_path):
    run = trained(tmp_path, "sparsity.method=gmp", "sparsity.update_interval=2")
    summary = json.loads((run / "summary.json").read_text())
    masks = load_checkpoint(run / "checkpoint.pt")["sparsifier"]["masks"]  # GMP keeps its own bool masks
    assert not (run / "updates.jsonl").exists()
    assert {r["name"]: r["active"] for r in summary["layers"]} == {n: int(m.sum()) for n, m in masks.items()}
    assert all(r["itop_rate"] is None for r in summary["layers"])
    size = sum(r["size"] for r in summary["layers"])
    assert sum(r["active"] for r in summary["layers"]) / size == pytest.approx(summary["density"])
