"""``sparsetime report``: ``report.md`` (tables of mean ± std over seeds, links to figures) and PNG figures.

Figures need matplotlib (``pip install sparsetime[plots]``); without it the tables are written
and the report says how to get the figures.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sparsetime.train.checkpoint import atomic_write_text

from ..index import SWEEP_COPY, SWEEP_SOURCE
from .collect import collect
from .figures import FigureSpec, choose_figures
from .stats import group_runs, varying_keys
from .tables import group_table, run_table

log = logging.getLogger(__name__)
REPORT_NAME = "report.md"
INSTALL_PLOTS = "pip install sparsetime[plots]"


@dataclass
class ReportResult:
    """Where the report went, how many finished runs it covers, its figure files and notes."""

    markdown: Path
    runs: int
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def default_out(paths: list[Path]) -> Path:
    """``PATH/report`` for one PATH, ``./report`` for several."""
    return paths[0] / "report" if len(paths) == 1 else Path("report")


def _numeric(runs: list, key: str) -> bool:
    values = [r.config.get(key) for r in runs]
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def write_report(paths: Iterable[str | Path], out: str | Path | None = None, *, command: str | None = None,
                 run_links: bool = True, made_by: Sequence[str] = ()) -> ReportResult:
    """Collect the runs under ``paths`` and write the report into ``out``.

    ``command``, the command line that made the report, is written into its "Reproduce" section after
    ``made_by`` (the commands that made runs no sweep made, e.g. ``sparsetime lth`` loops) and the sweep
    commands of the sweep directories among ``paths``; ``run_links=False`` names run directories
    without linking them (for a report committed without its runs)."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("report needs at least one PATH (a run directory, a sweep directory or a folder of runs)")
    collection = collect(paths)
    runs = collection.runs
    if not runs:
        waiting = f" ({len(collection.unfinished)} not finished)" if collection.unfinished else ""
        raise ValueError(f"no finished run under {', '.join(repr(str(p)) for p in paths)}{waiting}; "
                         "a run is finished once it wrote summary.json")
    out_dir = Path(out) if out is not None else default_out(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = varying_keys(runs, collection.keys)
    groups = group_runs(runs, keys)
    result = ReportResult(out_dir / REPORT_NAME, len(runs))
    figure_lines = _figures(collection.figures or choose_figures(
        keys, {k: _numeric(runs, k) for k in keys}, has_updates=any(r.updates for r in runs),
        has_layers=any(r.summary.get("layers") for r in runs), runs=len(groups)), runs, keys, out_dir, result)
    from .plot import context

    lines = [f"# Report: {', '.join(p.name or str(p) for p in paths)}", "",
             f"{len(runs)} finished runs ({context(runs)}) in {len(groups)} groups"
             + (f", grouped by {', '.join(f'`{k}`' for k in keys)}" if keys else "") + ".",
             "Cells are mean ± sample standard deviation (ddof = 1) over the runs of a group, which differ only "
             "in their seed; n is the number of runs, and a single run shows its value alone.", "",
             *_reproduce(paths, command, made_by), "## Results", "", *group_table(groups, keys), "", "## Figures", "",
             *figure_lines, "", "## Runs", "", *run_table(groups, keys, out_dir, links=run_links)]
    if collection.unfinished:
        lines += ["", "## Not finished", ""]
        lines += [f"- `{path.name}`: {status}" + (f" ({error})" if error else "")
                  for path, status, error in collection.unfinished]
    if result.notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in result.notes)]
    atomic_write_text(result.markdown, "\n".join(lines) + "\n")
    _remove_stale_figures(out_dir, result.figures)
    return result


def _remove_stale_figures(out_dir: Path, kept: Sequence[Path]) -> None:
    """Delete the figures an earlier report wrote into ``out_dir`` that this one did not redraw (the
    numbering shifts when the grouping keys change, and the report no longer links them)."""
    keep = {p.name for p in kept}
    for path in out_dir.glob("fig[0-9][0-9]-*.png"):
        if path.name not in keep:
            path.unlink()


def _reproduce(paths: list[Path], command: str | None, made_by: Sequence[str] = ()) -> list[str]:
    """The "Reproduce" section: the commands that made the runs, each sweep (the file it was run from,
    if that still exists, else the copy in its directory), then the report command."""
    sweeps = [_sweep_file(p) for p in paths if (p / SWEEP_COPY).is_file()]
    if command is None and not sweeps and not made_by:
        return []
    lines = ["## Reproduce", "", "```bash", *made_by]
    lines += [f"sparsetime sweep {path.as_posix()} --workers 2   # finished points are skipped" for path in sweeps]
    lines += [command] if command else []
    return lines + ["```", ""]


def _sweep_file(directory: Path) -> Path:
    source = directory / SWEEP_SOURCE
    if source.is_file():
        named = Path(source.read_text(encoding="utf-8").strip())
        if named.is_file():
            return named
    return directory / SWEEP_COPY


def _figures(specs: list[FigureSpec], runs: list, keys: list[str], out_dir: Path, result: ReportResult) -> list[str]:
    """Draw every figure; returns the report's lines that show them."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        result.notes.append(f"figures need matplotlib, which is not installed: `{INSTALL_PLOTS}`")
        return [f"Figures need matplotlib: install it with `{INSTALL_PLOTS}` and run `sparsetime report` again."]
    from .plot import FigureSkipped, draw, label

    lines = []
    for number, spec in enumerate(specs, start=1):
        path = out_dir / f"fig{number:02d}-{spec.slug}.png"
        try:
            result.notes.extend(draw(spec, runs, keys, path))
        except FigureSkipped as exc:
            result.notes.append(f"figure {spec.kind} {spec.y} vs {spec.x} skipped: {exc}")
            continue
        result.figures.append(path)
        caption = f"{label(spec.y)}" + (f" and {label(spec.y2)}" if spec.y2 else "") + f" vs {label(spec.x)}"
        lines += [f"![{caption}]({path.name})", ""]
    return lines or ["No figure could be drawn (see the notes)."]
