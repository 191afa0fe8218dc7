"""README's "Sweeps and reports" example: the file it shows is the repository's, and its commands do what it says."""
from __future__ import annotations

import struct

from sweep_helpers import REPO, index_rows, readme_example


def test_readme_shows_the_example_sweep_file():
    shown, _ = readme_example()
    assert shown == (REPO / "examples" / "sweeps" / "quick.yaml").read_text()


def test_readme_commands_produce_what_it_describes(quick_sweep):
    folder, commands, outputs = quick_sweep
    assert [c[:1] + c[2:] for c in commands] == [["sweep", "--dry-run"], ["sweep", "--workers", "2"],
                                                 ["sweep", "--status"], ["report"]]
    dry, run, status, report = outputs
    assert dry.stdout.splitlines()[-1] == "8 points; nothing was written (dry run)"
    assert run.stdout.splitlines()[-1].endswith("8 finished, 0 failed")
    assert status.stdout == run.stdout  # --status prints the same table
    sweep = folder / "runs" / "sweeps" / "quick"
    assert (sweep / "sweep.yaml").read_text() == (REPO / "examples" / "sweeps" / "quick.yaml").read_text()
    rows = index_rows(sweep)
    assert len(rows) == 8 and all(r["status"] == "finished" for r in rows)
    for row in rows:
        assert row["run_dir"].startswith("set-mlp-synthetic-d") and row["run_dir"].endswith(row["config_hash"])
        files = {p.name for p in (sweep / row["run_dir"]).iterdir() if not p.name.startswith(".")}  # .lock
        assert files == {"config.yaml", "metrics.jsonl", "updates.jsonl", "summary.json", "checkpoint.pt",
                         "train.log", "scalars.csv"}
    figures = sorted(p.name for p in (sweep / "report").glob("*.png"))
    assert [f[:5] for f in figures] == [f"fig0{i}" for i in range(1, 8)]
    assert figures[0] == "fig01-line-test_accuracy+itop_rate-vs-sparsity.update_interval.png"
    for kind, name in zip(("line", "line", "line", "curve", "scatter", "updates", "layers"), figures):
        assert name.split("-")[1] == kind
        with (sweep / "report" / name).open("rb") as fh:
            head = fh.read(24)
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", head[16:24])
        assert width >= 800 and height >= 400
    assert f"report: {sweep.relative_to(folder) / 'report' / 'report.md'} (8 runs, 7 figures)" in report.stdout
