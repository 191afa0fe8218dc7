"""Markdown tables of a report: one row per group (mean ± std over seeds), one row per run."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .stats import PERCENT_METRICS, Group, Stat, format_value, metric

# (metric, column title, format of one number)
TABLE_METRICS = (
    ("test_accuracy", "test acc (%)", "{:.2f}"),
    ("best_test_accuracy", "best test acc (%)", "{:.2f}"),
    ("train_test_gap", "train - test (pp)", "{:.2f}"),
    ("itop_rate", "Rs", "{:.4f}"),
    ("density", "realised density", "{:.4f}"),
    ("train_flops", "training FLOPs", "{:.3e}"),
    ("train_seconds", "train time (s)", "{:.1f}"),
)
# columns shown only when some run has the metric (lottery levels with ``supermask_eval``)
OPTIONAL_METRICS = (
    ("supermask_test_accuracy", "untrained mask acc (%)", "{:.2f}"),
)


def table_metrics(groups: Sequence[Group]) -> list[tuple[str, str, str]]:
    """The metric columns: the fixed ones, then the optional ones some run reports."""
    extra = [m for m in OPTIONAL_METRICS if any(metric(r.summary, m[0]) is not None for g in groups for r in g.runs)]
    return [*TABLE_METRICS[:2], *extra, *TABLE_METRICS[2:]]


def format_stat(stat: Stat, fmt: str, scale: float = 1.0) -> str:
    """``mean ± std`` (``mean`` alone for one run, ``-`` for none)."""
    if stat.mean is None:
        return "-"
    text = fmt.format(stat.mean * scale)
    return text if stat.std is None else f"{text} ± {fmt.format(stat.std * scale)}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def group_table(groups: Sequence[Group], keys: Sequence[str]) -> list[str]:
    """Lines of the table of groups: the varying keys, n, then mean ± std of each metric."""
    metrics = table_metrics(groups)
    header = [f"`{k}`" for k in keys] + ["n"] + [title for _, title, _ in metrics]
    rows = []
    for group in groups:
        cells = [format_value(group.values[k]) for k in keys] + [str(len(group.runs))]
        for name, _, fmt in metrics:
            cells.append(format_stat(group.stat(name), fmt, 100.0 if name in PERCENT_METRICS else 1.0))
        rows.append(cells)
    return _markdown(header, rows)


def run_table(groups: Sequence[Group], keys: Sequence[str], out_dir: Path, links: bool = True) -> list[str]:
    """Lines of the table of every run: keys, seed, test and best accuracy, Rs, density, the run directory
    (linked relative to ``out_dir`` unless ``links`` is false)."""
    header = [f"`{k}`" for k in keys] + ["seed", "test acc (%)", "best test acc (%)", "Rs", "realised density",
                                          "run directory"]
    rows = []
    for group in groups:
        for run in sorted(group.runs, key=lambda r: str(r.seed)):
            s = run.summary
            rs = metric(s, "itop_rate")
            link = Path(os.path.relpath(run.path.resolve(), out_dir.resolve())).as_posix()
            rows.append([format_value(group.values[k]) for k in keys] + [
                format_value(run.seed), f"{100 * s['test_accuracy']:.2f}", f"{100 * s['best_test_accuracy']:.2f}",
                "-" if rs is None else f"{rs:.4f}", f"{s['density']:.4f}",
                f"[{run.path.name}]({link})" if links else f"`{run.path.name}`"])
    return _markdown(header, rows)
