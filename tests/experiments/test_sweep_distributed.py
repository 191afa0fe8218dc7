"""A sweep of distributed runs: points with ``world_size: 2`` are each launched with torchrun."""
from __future__ import annotations

import json

from sweep_helpers import index_rows, run_main, write_sweep

from sparsetime.train import load_config, resolve_config, run_directory


def test_points_with_a_world_size_run_under_torchrun(tmp_path):
    base = {"dataset": "synthetic", "data.options": {"train_size": 96, "test_size": 32}, "model": "mlp",
            "model_options.hidden": [8], "epochs": 2, "batch_size": 8, "sparsity.density": 0.3,
            "sparsity.update_interval": 2, "device": "cpu", "world_size": 2}
    path = write_sweep(tmp_path, base=base, grid={"sparsity.method": ["set", "static"]}, seeds=[0])
    proc = run_main("sweep", str(path), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    sweep_dir = tmp_path / "out" / "s"
    rows = index_rows(sweep_dir)
    assert [r["status"] for r in rows] == ["finished", "finished"]
    for row in rows:
        summary = json.loads((sweep_dir / row["run_dir"] / "summary.json").read_text())
        assert summary["world_size"] == 2 and summary["global_batch_size"] == 16
        assert row["test_accuracy"] == summary["test_accuracy"]
        metrics = (sweep_dir / row["run_dir"] / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(m)["epoch"] for m in metrics] == [1, 2]  # one writer
    # the same directory a user gets with torchrun and these overrides
    method = json.loads(rows[0]["overrides"])["sparsity.method"]
    user = resolve_config(load_config(None, [f"{k}={json.dumps(v) if isinstance(v, dict | list) else v}"
                                             for k, v in base.items()] + [f"sparsity.method={method}", "seed=0",
                                                                          f"output_dir={sweep_dir}"]))
    assert run_directory(user).name == rows[0]["run_dir"]
