"""Reports: the tables hold the right means and sample stds (recomputed here from the summaries), figures exist."""
from __future__ import annotations

import json
import shutil
import statistics
import sys
from pathlib import Path

import pytest
import yaml

from sparsetime.cli import main
from sparsetime.experiments import write_report
from sparsetime.experiments.report.collect import RunRecord
from sparsetime.experiments.report.stats import group_runs, mean_std, varying_keys


def table(markdown: str, heading: str) -> list[dict[str, str]]:
    """The rows of the first table after ``## heading``, as dicts keyed by the header cells."""
    lines = markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0].splitlines()
    rows = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in lines if line.startswith("|")]
    return [dict(zip(rows[0], r)) for r in rows[2:]]


def runs_of(sweep) -> list[tuple[dict, dict]]:
    """(resolved config, summary) of every run directory, read straight from the files."""
    return [(yaml.safe_load((d / "config.yaml").read_text()), json.loads((d / "summary.json").read_text()))
            for d in sorted(sweep.iterdir()) if (d / "summary.json").is_file()]


def cell(values: list[float], fmt: str) -> str:
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def test_report_table_holds_mean_and_sample_std_over_seeds(quick_sweep):
    folder, _, _ = quick_sweep
    sweep = folder / "runs" / "sweeps" / "quick"
    groups: dict[tuple, list[dict]] = {}
    for config, summary in runs_of(sweep):
        groups.setdefault((config["sparsity"]["update_interval"], config["sparsity"]["density"]), []).append(summary)
    rows = table((sweep / "report" / "report.md").read_text(), "Results")
    assert len(rows) == len(groups) == 4
    for row in rows:
        summaries = groups[(int(row["`sparsity.update_interval`"]), float(row["`sparsity.density`"]))]
        assert row["n"] == str(len(summaries)) == "2"
        assert row["test acc (%)"] == cell([100 * s["test_accuracy"] for s in summaries], "{:.2f}")
        assert row["best test acc (%)"] == cell([100 * s["best_test_accuracy"] for s in summaries], "{:.2f}")
        assert row["train - test (pp)"] == cell([100 * (s["train_accuracy"] - s["test_accuracy"])
                                                 for s in summaries], "{:.2f}")
        assert row["Rs"] == cell([s["itop_rate"] for s in summaries], "{:.4f}")
        assert row["training FLOPs"] == cell([s["train_flops"] for s in summaries], "{:.3e}")
    per_run = table((sweep / "report" / "report.md").read_text(), "Runs")
    assert len(per_run) == 8 and all((sweep / "report" / r["run directory"].split("](")[1][:-1]).is_dir()
                                     for r in per_run)


def test_report_links_every_figure(quick_sweep):
    folder, _, _ = quick_sweep
    report = (folder / "runs" / "sweeps" / "quick" / "report" / "report.md").read_text()
    figures = sorted(p.name for p in (folder / "runs" / "sweeps" / "quick" / "report").glob("*.png"))
    assert len(figures) == 7 and all(f"]({name})" in report for name in figures)
    assert "(ddof = 1)" in report and "synthetic · MLP · densities 0.1, 0.3" in report


def test_figures_named_in_the_sweep_file_are_drawn_instead(quick_sweep, tmp_path):
    folder, _, _ = quick_sweep
    sweep = tmp_path / "quick"
    shutil.copytree(folder / "runs" / "sweeps" / "quick", sweep, ignore=shutil.ignore_patterns("report"))
    data = yaml.safe_load((sweep / "sweep.yaml").read_text())
    data["figures"] = [{"kind": "bar", "x": "sparsity.density", "y": "test_accuracy", "y2": "itop_rate",
                        "hue": "sparsity.update_interval", "title": "Accuracy and Rs per density"},
                       {"kind": "curve", "x": "step", "y": "train_accuracy", "y2": "test_accuracy"}]
    (sweep / "sweep.yaml").write_text(yaml.safe_dump(data))
    result = write_report([sweep], tmp_path / "out")
    assert [p.name for p in result.figures] == ["fig01-bar-test_accuracy+itop_rate-vs-sparsity.density.png",
                                                "fig02-curve-train_accuracy+test_accuracy-vs-step.png"]
    assert all(p.stat().st_size > 10_000 for p in result.figures)


def test_report_of_run_directories_and_of_a_folder_of_runs(quick_sweep, tmp_path, capsys):
    folder, _, _ = quick_sweep
    sweep = folder / "runs" / "sweeps" / "quick"
    pairs = runs_of(sweep)
    same = [d for d in sorted(sweep.iterdir()) if (d / "config.yaml").is_file()
            and yaml.safe_load((d / "config.yaml").read_text())["sparsity"]["density"] == 0.3
            and yaml.safe_load((d / "config.yaml").read_text())["sparsity"]["update_interval"] == 8]
    assert len(same) == 2  # the two seeds of one point
    assert main(["report", *map(str, same), "--out", str(tmp_path / "two")]) == 0
    assert "report: " in capsys.readouterr().out
    (row,) = table((tmp_path / "two" / "report.md").read_text(), "Results")
    accuracies = [100 * s["test_accuracy"] for c, s in pairs
                  if c["sparsity"]["density"] == 0.3 and c["sparsity"]["update_interval"] == 8]
    assert row["n"] == "2" and row["test acc (%)"] == cell(accuracies, "{:.2f}")

    runs = tmp_path / "runs"  # a plain folder of run directories: the varying key is found from the configs
    for d in sorted(sweep.iterdir()):
        if (d / "config.yaml").is_file() and yaml.safe_load((d / "config.yaml").read_text())["sparsity"][
                "update_interval"] == 2:
            shutil.copytree(d, runs / d.name)
    result = write_report([runs])
    assert result.markdown == runs / "report" / "report.md"
    rows = table(result.markdown.read_text(), "Results")
    assert [r["`sparsity.density`"] for r in rows] == ["0.1", "0.3"]


def test_report_says_how_to_reproduce_it_and_can_leave_runs_unlinked(quick_sweep, tmp_path, monkeypatch):
    folder, _, _ = quick_sweep
    assert (folder / "runs" / "sweeps" / "quick" / "sweep_source.txt").read_text() == "examples/sweeps/quick.yaml\n"
    sweep = tmp_path / "quick"
    shutil.copytree(folder / "runs" / "sweeps" / "quick", sweep, ignore=shutil.ignore_patterns("report"))
    monkeypatch.chdir(folder)  # where the sweep ran: its source file is found there
    out = tmp_path / "docs results"

    def reproduce() -> list[str]:
        assert main(["report", str(sweep), "--out", str(out), "--no-run-links"]) == 0
        text = (out / "report.md").read_text()
        return text.split("## Reproduce\n\n```bash\n", 1)[1].split("```", 1)[0].splitlines()

    report_line = f"sparsetime report {sweep} --out '{out}' --no-run-links"
    assert reproduce() == ["sparsetime sweep examples/sweeps/quick.yaml --workers 2   # finished points are skipped",
                           report_line]
    (sweep / "sweep_source.txt").write_text("gone.yaml\n")  # a source that is gone: the copy is named
    assert reproduce() == [f"sparsetime sweep {(sweep / 'sweep.yaml').as_posix()} --workers 2   "
                           "# finished points are skipped", report_line]
    names = [r["run directory"] for r in table((out / "report.md").read_text(), "Runs")]
    assert len(names) == 8 and all(n.startswith("`") and "](" not in n and (sweep / n.strip("`")).is_dir()
                                   for n in names)


def test_report_without_matplotlib_still_has_the_tables(quick_sweep, tmp_path, monkeypatch):
    folder, _, _ = quick_sweep
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    result = write_report([folder / "runs" / "sweeps" / "quick"], tmp_path)
    text = result.markdown.read_text()
    assert result.figures == [] and not list(tmp_path.glob("*.png"))
    assert "pip install sparsetime[plots]" in text and len(table(text, "Results")) == 4


def test_report_of_unfinished_and_unknown_paths(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "is not a run directory (no config.yaml), a sweep directory" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 0\n")
    assert main(["report", str(run)]) == 2
    assert "no finished run under" in capsys.readouterr().err


def test_varying_keys_leave_out_keys_the_others_determine():
    runs = [RunRecord(Path(f"r{i}"), {"seed": s, "name": f"run{i}", "sparsity.method": m,
                      "sparsity.growth": "random" if m == "set" else "gradient", "sparsity.density": d},
                      {"test_accuracy": a}, [], [])
            for i, (s, m, d, a) in enumerate([(0, "set", 0.1, 0.5), (1, "set", 0.1, 0.7), (0, "rigl", 0.1, 0.6),
                                               (0, "set", 0.2, 0.8)])]
    keys = varying_keys(runs)
    assert keys == ["sparsity.method", "sparsity.density"]  # growth follows from the method; seeds average
    groups = group_runs(runs, keys)
    assert [(g.values["sparsity.method"], g.values["sparsity.density"], len(g.runs)) for g in groups] == [
        ("set", 0.1, 2), ("set", 0.2, 1), ("rigl", 0.1, 1)]  # numbers in order, names as the runs list them
    stat = groups[0].stat("test_accuracy")
    assert stat.n == 2 and stat.mean == pytest.approx(0.6) and stat.std == pytest.approx(statistics.stdev([0.5, 0.7]))
    assert mean_std([0.4]).std is None and mean_std([]).mean is None
    assert varying_keys(runs, preferred=["sparsity.growth"])[0] == "sparsity.growth"


def test_report_of_lottery_experiments_averages_each_level_over_seeds(tmp_path):
    """Each level names its previous level's directory (one per seed): that must not split the groups."""
    out = tmp_path / "runs"
    for seed in (0, 1):
        assert main(["-q", "lth", "dataset=synthetic", "data.options.train_size=128", "data.options.test_size=64",
                     "model_options.hidden=[16]", "epochs=1", "batch_size=32", "sparsity.options.levels=1",
                     "sparsity.options.fraction=0.5", "sparsity.options.supermask_eval=true", f"seed={seed}",
                     "name=ticket", f"output_dir={out}", "progress=none", "device=cpu"]) == 0
    levels = sorted(d for experiment in out.iterdir() for d in experiment.iterdir() if d.name.startswith("level_"))
    assert len(levels) == 4
    report = tmp_path / "report"
    made_by = "for s in 0 1; do sparsetime lth ... seed=$s; done"
    assert main(["report", *map(str, sorted(out.iterdir())), "--out", str(report), "--made-by", made_by]) == 0
    text = (report / "report.md").read_text()
    reproduce = text.split("## Reproduce\n\n```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert reproduce[0] == made_by and reproduce[1].startswith("sparsetime report ")
    assert reproduce[1].endswith("--made-by 'for s in 0 1; do sparsetime lth ... seed=$s; done'")
    rows = table(text, "Results")
    assert [(r["`sparsity.density`"], r["n"]) for r in rows] == [("0.5", "2"), ("1", "2")]
    drawn = sorted(p.name for p in report.glob("*.png"))
    assert drawn and all(f"]({name})" in text for name in drawn)  # no figure left from an earlier report
    (report / "fig42-bar-test_accuracy-vs-old_key.png").write_bytes(b"stale")
    (report / "notes.png").write_bytes(b"the user's")
    assert main(["report", *map(str, sorted(out.iterdir())), "--out", str(report)]) == 0
    assert sorted(p.name for p in report.glob("*.png")) == sorted([*drawn, "notes.png"])
    summaries = [json.loads((d / "summary.json").read_text()) for d in levels if d.name.startswith("level_01")]
    untrained = [100 * s["supermask_test_accuracy"] for s in summaries]
    assert rows[0]["untrained mask acc (%)"] == cell(untrained, "{:.2f}")
    assert rows[0]["test acc (%)"] == cell([100 * s["test_accuracy"] for s in summaries], "{:.2f}")
