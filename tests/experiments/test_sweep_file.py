"""Sweep files: every bad one is refused before anything runs; every point is exactly a `sparsetime train` run."""
from __future__ import annotations

import pytest
from sweep_helpers import TINY_BASE, index_rows, summary, write_sweep

from sparsetime.cli import main
from sparsetime.experiments import expand_points, load_sweep, parse_sweep
from sparsetime.train import config_hash, load_config, resolve_config, run_directory

GRID = {"sparsity.density": [0.2, 0.3]}


@pytest.mark.parametrize("fields, message", [
    ({"seed": [0]}, "unknown key 'seed'; did you mean 'seeds'?"),
    ({"grid": {"sparsity.densty": [0.1]}}, "grid key: unknown config key 'sparsity.densty'; did you mean "
                                           "'sparsity.density'?"),
    ({"grid": {"sparsity": {"update_intervall": [2]}}}, "did you mean 'sparsity.update_interval'?"),
    ({"grid": {}}, "grid is empty"),
    ({"grid": {"epochs": []}}, "grid key 'epochs' has an empty list of values"),
    ({"grid": {"epochs": 3}}, "grid key 'epochs' must map to a list of values, got 3"),
    ({"grid": {"epochs": [2, "many"]}}, "grid key 'epochs' value 'many': config key 'epochs': cannot read 'many' "
                                        "as int"),
    ({"grid": {"sparsity.dense_first": [True, "sometimes"]}}, "cannot read 'sometimes' as bool"),
    ({"grid": {"sparsity.density": [0.1, 2.0]}}, "'sparsity.density' = 2.0 is invalid; allowed: 0 < density <= 1"),
    ({"grid": {"sparsity.method": ["set", "rigel"]}}, "unknown sparsity.method 'rigel'"),
    ({"grid": {"seed": [0, 1]}}, "'seed' cannot be set here; list seeds under the top-level `seeds:` key"),
    ({"grid": GRID, "runs": [{"sparsity.density": 0.5}]}, "runs[0] sets 'sparsity.density', which the grid also"),
    ({"runs": [{"sparsity.growt": "gradient"}]}, "runs[0]: unknown config key 'sparsity.growt'; did you mean "
                                                "'sparsity.growth'?"),
    ({"runs": []}, "runs must be a non-empty list"),
    ({"runs": ["sparsity.method=rigl"]}, "runs[0] must be a mapping"),
    ({"seeds": [0, 0]}, "repeats a seed"),
    ({"seeds": [0.5]}, "seeds = [0.5] is invalid; allowed: a non-empty list of integers"),
    ({"name": "two words", "seeds": [0]}, "name = 'two words' is invalid"),
    ({"base": {"optim.lrr": 0.1}, "seeds": [0]}, "base: unknown config key 'optim.lrr'; did you mean 'optim.lr'?"),
    ({"base": ["optim.lr=fast"], "seeds": [0]}, "config key 'optim.lr': cannot read 'fast' as float"),
    ({"base_config": "nope.yaml", "seeds": [0]}, "base_config 'nope.yaml' does not exist"),
    ({"grid": GRID, "figures": [{"kind": "lines", "x": "sparsity.density", "y": "test_accuracy"}]},
     "figures[0]: kind 'lines' is not known; did you mean 'line'?"),
    ({"grid": GRID, "figures": [{"x": "sparsity.density", "y": "test_acc"}]},
     "figures[0]: y = 'test_acc' is not known; did you mean 'test_accuracy'?"),
    ({"grid": GRID, "figures": [{"x": "sparsity.densiti", "y": "test_accuracy"}]},
     "figures[0]: x: unknown config key 'sparsity.densiti'; did you mean 'sparsity.density'?"),
    ({"grid": GRID, "figures": [{"x": "sparsity.density", "y": "test_accuracy", "colour": "red"}]},
     "figures[0]: unknown key 'colour'"),
])
def test_bad_sweep_files_are_refused_before_anything_runs(tmp_path, capsys, fields, message):
    path = write_sweep(tmp_path, **fields)
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparsetime: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, message", [
    ("- just\n- a list\n", "must be a mapping"),
    ("name: [unclosed\n", "is not valid YAML"),
    ("name: s\n", "names no points"),
])
def test_malformed_sweep_files(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["sweep", str(path), "--dry-run"]) == 2
    assert message in capsys.readouterr().err


def test_missing_sweep_file_and_bad_worker_count(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "none.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["sweep", str(write_sweep(tmp_path, seeds=[0])), "--workers", "0"]) == 2
    assert "--workers 0 is invalid; allowed: an integer >= 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_grid_runs_and_seeds_cross_into_points(tmp_path):
    spec = load_sweep(write_sweep(tmp_path, grid={"sparsity.density": [0.2, 0.3], "batch_size": [16, 32]},
                                  runs=[{"sparsity.method": "set"}, {"sparsity.method": "rigl"}], seeds=[0, 1, 2]))
    points = expand_points(spec)
    assert len(points) == 2 * 2 * 2 * 3
    seen = {(p.config.sparsity.density, p.config.batch_size, p.config.sparsity.method, p.seed) for p in points}
    assert seen == {(d, b, m, s) for d in (0.2, 0.3) for b in (16, 32) for m in ("set", "rigl") for s in (0, 1, 2)}
    assert all(p.run_dir.parent == tmp_path / "out" / "s" for p in points)
    assert len({p.run_dir for p in points}) == len(points)
    assert spec.varying_keys == ["sparsity.density", "batch_size", "sparsity.method"]


def test_points_that_resolve_to_one_run_are_kept_once(tmp_path):
    # a static mask has no update interval (the method fixes it), so the two grid values are one run
    spec = load_sweep(write_sweep(tmp_path, grid={"sparsity.update_interval": [2, 4]},
                                  runs=[{"sparsity.method": "static"}, {"sparsity.method": "set"}]))
    points = expand_points(spec)
    assert [(p.config.sparsity.method, p.config.sparsity.update_interval) for p in points] == [
        ("static", None), ("set", 2), ("set", 4)]


def test_base_forms_and_base_config_merge_key_by_key(tmp_path):
    (tmp_path / "base.yaml").write_text("dataset: synthetic\ndata:\n  options:\n    train_size: 64\nepochs: 2\n")
    nested = parse_sweep({"name": "a", "base_config": "base.yaml", "base": {"data": {"options": {"test_size": 32}},
                          "model_options": {"hidden": [8]}}, "seeds": [3]}, tmp_path / "sweep.yaml")
    dotted = parse_sweep({"name": "a", "base_config": "base.yaml", "base": {"data.options.test_size": 32,
                          "model_options.hidden": [8]}, "seeds": [3]}, tmp_path / "sweep.yaml")
    strings = parse_sweep({"name": "a", "base_config": str(tmp_path / "base.yaml"),
                           "base": ["data.options.test_size=32", "model_options.hidden=[8]"], "seeds": [3]})
    configs = [expand_points(s)[0].config for s in (nested, dotted, strings)]
    assert configs[0] == configs[1] == configs[2]
    assert configs[0].data.options == {"train_size": 64, "test_size": 32}  # merged, not replaced
    assert configs[0].seed == 3 and configs[0].model_options["hidden"] == [8]


def test_every_point_is_the_run_sparsetime_train_makes(tmp_path, capsys):
    path = write_sweep(tmp_path, grid=GRID, seeds=[0, 1])
    overrides = [f"{k}={v}" for k, v in TINY_BASE.items() if k != "data.options"]
    overrides += ["data.options.train_size=64", "data.options.test_size=32", "sparsity.density=0.3", "seed=1",
                  f"output_dir={tmp_path / 'out' / 's'}"]
    expected = run_directory(resolve_config(load_config(None, overrides)))
    points = {(p.config.sparsity.density, p.seed): p for p in expand_points(load_sweep(path))}
    assert points[(0.3, 1)].run_dir == expected
    assert points[(0.3, 1)].config_hash == config_hash(resolve_config(load_config(None, overrides)))

    assert main(["-q", "train", *overrides]) == 0  # trained by hand first: the sweep finds it finished
    capsys.readouterr()
    mtime = (expected / "summary.json").stat().st_mtime_ns
    assert main(["sweep", str(path), "--status"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("3 pending, 0 running, 1 finished, 0 failed")

    one = write_sweep(tmp_path, grid={"sparsity.density": [0.3]}, seeds=[1])  # the same point alone
    assert main(["-q", "sweep", str(one)]) == 0  # nothing to run: no worker starts
    assert (expected / "summary.json").stat().st_mtime_ns == mtime  # not trained again
    (row,) = index_rows(tmp_path / "out" / "s")
    assert row["run_dir"] == expected.name and row["status"] == "finished" and row["attempts"] == 0
    assert row["test_accuracy"] == summary(expected)["test_accuracy"]
    assert row["config_hash"] == expected.name.rsplit("-", 1)[1]
