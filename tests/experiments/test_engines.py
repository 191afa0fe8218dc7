"""Ray (a local instance) and submitit (its local executor) write the same runs and index as the local engine."""
from __future__ import annotations

import sys

import pytest
from sweep_helpers import comparable, index_rows, summary, write_sweep

from sparsetime.cli import main
from sparsetime.experiments import load_sweep, run_sweep

GRID = {"sparsity.density": [0.2, 0.3]}


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the module (starting Ray takes seconds)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_rows(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("local")
    state = run_sweep(load_sweep(write_sweep(tmp, name="local", grid=GRID)), workers=2, verbose=False)
    assert state.counts()["finished"] == 2
    return index_rows(tmp / "out" / "local")


def check_same(rows, local_rows, sweep_dir):
    assert comparable(rows) == comparable(local_rows)
    for row in rows:
        assert summary(sweep_dir / row["run_dir"])["test_accuracy"] == row["test_accuracy"]


def test_ray_engine_matches_the_local_engine(tmp_path, ray_instance, local_rows):
    path = write_sweep(tmp_path, name="ray", grid=GRID)
    state = run_sweep(load_sweep(path), engine="ray", workers=2, verbose=False)
    assert state.counts()["finished"] == 2
    rows = index_rows(tmp_path / "out" / "ray")
    check_same(rows, local_rows, tmp_path / "out" / "ray")
    assert ray_instance.is_initialized()  # a session the caller started is left running
    again = run_sweep(load_sweep(path), engine="ray", workers=2, verbose=False)  # nothing left to run
    assert index_rows(tmp_path / "out" / "ray") == rows and again.counts()["finished"] == 2


def test_submitit_engine_matches_the_local_engine(tmp_path, local_rows):
    pytest.importorskip("submitit")
    path = write_sweep(tmp_path, name="sub", grid=GRID, slurm={"cluster": "local"})
    state = run_sweep(load_sweep(path), engine="submitit", workers=2, verbose=False)
    assert state.counts()["finished"] == 2
    rows = index_rows(tmp_path / "out" / "sub")
    check_same(rows, local_rows, tmp_path / "out" / "sub")
    jobs = [p for p in (tmp_path / "out" / "sub" / "submitit").iterdir() if p.name.isdigit()]
    assert len(jobs) == 2  # one job (and its logs) per point


@pytest.mark.parametrize("engine, module, extra", [("ray", "ray", "ray"), ("submitit", "submitit", "slurm")])
def test_missing_engine_extra_is_a_clear_error(tmp_path, capsys, monkeypatch, engine, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    path = write_sweep(tmp_path, grid=GRID)
    assert main(["sweep", str(path), "--engine", engine]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparsetime: error: ") and f"pip install sparsetime[{extra}]" in err
    assert not (tmp_path / "out").exists()


def test_bad_submitit_parameter_is_refused(tmp_path, capsys):
    pytest.importorskip("submitit")
    path = write_sweep(tmp_path, grid=GRID, slurm={"cluster": "local", "slurm_partitionn": "gpu"})
    assert main(["sweep", str(path), "--engine", "submitit"]) == 2
    assert "parameters refused by submitit" in capsys.readouterr().err


def test_bad_ray_option_is_refused_before_anything_is_written(tmp_path, capsys):
    pytest.importorskip("ray")
    path = write_sweep(tmp_path, grid=GRID, ray={"num_cpuss": 1})
    assert main(["sweep", str(path), "--engine", "ray"]) == 2
    assert "options refused by Ray: Invalid option keyword num_cpuss" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
