"""Every study under experiments/ is a valid sweep (or lottery-ticket) file: its points resolve."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sweep_helpers import run_main

from sparsetime.experiments.lottery import lottery_configs
from sparsetime.train import load_config

STUDIES = sorted((Path(__file__).resolve().parents[2] / "experiments").rglob("*.yaml"))


def test_the_studies_are_found():
    names = {p.parent.name + "/" + p.name for p in STUDIES}
    assert {"cpu/01_update_interval.yaml", "cpu/06_lottery.yaml", "paper/07_erk_uniform.yaml"} <= names


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_study_file_resolves(path, tmp_path):
    data = yaml.safe_load(path.read_text())
    if "grid" in data or "runs" in data:  # a sweep: its dry run lists every point and writes nothing
        proc = run_main("sweep", str(path), "--dry-run", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "nothing was written (dry run)" in proc.stdout
        assert not any(tmp_path.iterdir())
    else:  # a lottery-ticket experiment: every level resolves
        levels = lottery_configs(load_config(path, [f"output_dir={tmp_path}"]))
        assert len(levels) == data["sparsity"]["options"]["levels"] + 1
