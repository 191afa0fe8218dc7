"""Draw a report's figures with matplotlib's object API (Agg canvas; no pyplot, no global state).

Every figure shows the mean over seeds with a ±std band (sample std) or error bars, axis labels
with units, a legend, log axes where the values span a decade or more, and a title naming the
dataset, model and density of the runs in it.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sparsetime.train.checkpoint import atomic_open

from .collect import RunRecord
from .figures import FigureSpec
from .stats import (PERCENT_METRICS, Stat, appearance, format_value, group_runs, hashable, mean_std, metric,
                    sort_key)

LABELS = {
    "test_accuracy": "test accuracy (%)", "best_test_accuracy": "best test accuracy (%)",
    "train_accuracy": "train accuracy (%)", "validation_accuracy": "validation accuracy (%)",
    "train_test_gap": "train - test accuracy (percentage points)", "test_loss": "test loss (cross-entropy)",
    "train_loss": "train loss (cross-entropy)", "itop_rate": "Rs (fraction of weights ever active)",
    "density": "density (fraction of weights active)", "train_flops": "training FLOPs (total)",
    "inference_flops": "inference FLOPs per example", "train_seconds": "training time (s)",
    "topology_updates": "topology updates (count)", "replaced_fraction": "replaced fraction (of active weights)",
    "drop_fraction": "drop fraction (of active weights)", "hamming": "Hamming distance to previous mask (fraction)",
    "lr": "learning rate", "epoch": "epoch", "step": "training step", "layer": "layer",
    "sparsity.update_interval": "update interval ΔT (steps)", "batch_size": "batch size (examples)",
    "sparsity.density": "target density (fraction of weights)", "extend": "training length (× epochs)",
    "epochs": "epochs", "name": "run name", "sparsity.drop_fraction": "initial drop fraction", "optim.lr": "learning rate",
    "sparsity.growth": "growth criterion", "sparsity.method": "method", "sparsity.distribution": "layer densities",
    "sparsity.stop_fraction": "exploration stops at (fraction of training)",
}
_DATASETS = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
_MODELS = {"mlp": "MLP", "lenet300": "LeNet-300-100", "lenet5": "LeNet-5", "vgg16": "VGG-16", "resnet18": "ResNet-18",
           "resnet34": "ResNet-34", "resnet50": "ResNet-50", "wrn22_2": "WRN-22-2"}
_MARKERS = "osD^v<>ph*"
MAX_LAYER_SERIES = 6


class FigureSkipped(ValueError):
    """The runs hold nothing this figure can show; the message says why."""


def label(name: str) -> str:
    return LABELS.get(name, name)


def _title_name(name: str) -> str:
    text = label(name).split(" (")[0]
    return text[:1].upper() + text[1:]


def _scale(name: str) -> float:
    return 100.0 if name in PERCENT_METRICS else 1.0


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def context(runs: Sequence[RunRecord]) -> str:
    """``Fashion-MNIST · MLP · density 0.02`` (several values joined, many as a range)."""
    def values(key: str) -> list[Any]:
        return sorted({hashable(r.config.get(key)) for r in runs}, key=sort_key)

    datasets = ", ".join(_DATASETS.get(str(v), str(v)) for v in values("dataset"))
    models = ", ".join(_MODELS.get(str(v), str(v)) for v in values("model"))
    densities = [v for v in values("sparsity.density") if _number(v) is not None]
    if len(densities) == 1:
        density = f"density {densities[0]:g}"
    elif len(densities) <= 4:
        density = "densities " + ", ".join(f"{d:g}" for d in densities)
    else:
        density = f"densities {densities[0]:g}-{densities[-1]:g}"
    return " · ".join(p for p in (datasets, models, density) if p)


def _series(runs: Sequence[RunRecord], keys: Sequence[str]) -> list[tuple[str, list[RunRecord]]]:
    """Runs split by the values of ``keys`` -> (legend label, runs), in value order."""
    if not keys:
        return [("mean over seeds", list(runs))]
    if len(keys) == 1:  # the legend's title names the key
        return [(format_value(g.values[keys[0]]), g.runs) for g in group_runs(runs, keys)]
    return [(g.label(keys), g.runs) for g in group_runs(runs, keys)]


def _legend(fig: Any, hue: Sequence[str], handles: list[Any] | None = None) -> None:
    """One legend outside the axes, on the right (it never hides data)."""
    axes = fig.axes[0]
    if handles is None:
        handles, _ = axes.get_legend_handles_labels()
    if not handles:
        return
    title = label(hue[0]).split(" (")[0] if len(hue) == 1 else None
    fig.legend(handles=handles, title=title, loc="outside right upper", fontsize="small", title_fontsize="small")


def _log_if_wide(ax: Any, axis: str, values: Sequence[float], base: float = 10) -> None:
    """A log axis when the values span a decade or more, its ticks written as plain numbers."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    finite = [v for v in values if v is not None and math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) >= 10:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log", base=base)
        which = ax.xaxis if axis == "x" else ax.yaxis
        which.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        if base == 10 and max(finite) / min(finite) < 100:  # under two decades: label 2x and 5x as well
            which.set_minor_formatter(FuncFormatter(
                lambda v, _: f"{v:g}" if round(v / 10 ** math.floor(math.log10(v)), 6) in (2, 5) else ""))
        else:
            which.set_minor_formatter(NullFormatter())


def _band(ax: Any, xs: Sequence[float], stats: Sequence[Stat], scale: float, **style: Any) -> None:
    pairs = [(x, s) for x, s in zip(xs, stats) if s.mean is not None]
    if not pairs:
        return
    x = [p[0] for p in pairs]
    mean = [p[1].mean * scale for p in pairs]
    std = [(p[1].std or 0.0) * scale for p in pairs]
    line, = ax.plot(x, mean, **style)
    if any(std):
        ax.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                        color=line.get_color(), alpha=0.18, linewidth=0)


def _style_legend(fig: Any, handles: list[Any], spec: FigureSpec, hue: Sequence[str]) -> None:
    from matplotlib.lines import Line2D

    if spec.y2:
        handles = handles + [Line2D([], [], color="0.3", linestyle="-", label=f"{_title_name(spec.y)} (left)"),
                             Line2D([], [], color="0.3", linestyle="--", label=f"{_title_name(spec.y2)} (right)")]
    _legend(fig, hue, handles)


def _line(fig: Any, spec: FigureSpec, runs: Sequence[RunRecord], hue: Sequence[str]) -> None:
    ax = fig.add_subplot()
    ax2 = ax.twinx() if spec.y2 else None
    handles, all_x, all_y = [], [], []
    for i, (name, members) in enumerate(_series(runs, hue)):
        by_x: dict[float, list[RunRecord]] = {}
        for run in members:
            x = _number(run.config.get(spec.x))
            if x is not None:
                by_x.setdefault(x, []).append(run)
        if not by_x:
            continue
        xs = sorted(by_x)
        all_x += xs
        color, marker = f"C{i % 10}", _MARKERS[i % len(_MARKERS)]
        stats = [mean_std(metric(r.summary, spec.y) for r in by_x[x]) for x in xs]
        all_y += [s.mean * _scale(spec.y) for s in stats if s.mean is not None]
        _band(ax, xs, stats, _scale(spec.y), color=color, marker=marker, label=name)
        if ax2 is not None:
            stats2 = [mean_std(metric(r.summary, spec.y2) for r in by_x[x]) for x in xs]
            _band(ax2, xs, stats2, _scale(spec.y2), color=color, marker=marker, linestyle="--", markerfacecolor="none")
        handles.append(ax.lines[-1])
    if not all_x:
        raise FigureSkipped(f"no run has a numeric {spec.x}; for categories use kind: bar")
    _log_if_wide(ax, "x", all_x, base=2 if spec.x == "batch_size" else 10)
    if len(set(all_x)) <= 8:
        ax.set_xticks(sorted(set(all_x)), [format_value(v) for v in sorted(set(all_x))])
        ax.minorticks_off()
    ax.set_xlabel(label(spec.x))
    ax.set_ylabel(label(spec.y))
    if ax2 is not None:
        ax2.set_ylabel(label(spec.y2))
    ax.grid(alpha=0.3)
    _style_legend(fig, handles, spec, hue)


def _bar_panels(fig: Any, spec: FigureSpec) -> list[tuple[Any, str]]:
    names = [spec.y] + ([spec.y2] if spec.y2 else [])
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    return list(zip(axes, names))


def _bar(fig: Any, spec: FigureSpec, runs: Sequence[RunRecord], hue: Sequence[str]) -> None:
    seen = appearance(r.config.get(spec.x) for r in runs)
    categories = sorted(seen, key=lambda c: sort_key(c, seen))
    series = _series(runs, hue)
    width = 0.8 / len(series)
    for ax, name in _bar_panels(fig, spec):
        for j, (series_name, members) in enumerate(series):
            stats = [mean_std(metric(r.summary, name) for r in members if hashable(r.config.get(spec.x)) == c)
                     for c in categories]
            xs = [i - 0.4 + width * (j + 0.5) for i in range(len(categories))]
            heights = [(s.mean or 0.0) * _scale(name) for s in stats]
            errors = [(s.std or 0.0) * _scale(name) for s in stats]
            ax.bar(xs, heights, width * 0.92, yerr=errors, capsize=3, color=f"C{j % 10}", label=series_name)
        names = [format_value(c) for c in categories]
        crowded = sum(len(n) for n in names) > 40  # long category names would overlap: slant them
        ax.set_xticks(range(len(categories)), names, rotation=30 if crowded else 0, ha="right" if crowded else "center")
        ax.set_xlabel(label(spec.x))
        ax.set_ylabel(label(name))
        ax.grid(axis="y", alpha=0.3)
    if hue:
        _legend(fig, hue)


def _scatter(fig: Any, spec: FigureSpec, runs: Sequence[RunRecord], hue: Sequence[str]) -> None:
    ax = fig.add_subplot()
    xs_all = []
    for i, (name, members) in enumerate(_series(runs, hue)):
        x = mean_std(_number(r.config.get(spec.x)) if spec.x in r.config else metric(r.summary, spec.x)
                     for r in members)
        y = mean_std(metric(r.summary, spec.y) for r in members)
        if x.mean is None or y.mean is None:
            continue
        xs_all.append(x.mean)
        ax.errorbar([x.mean], [y.mean * _scale(spec.y)], xerr=[x.std or 0.0], yerr=[(y.std or 0.0) * _scale(spec.y)],
                    fmt=_MARKERS[i % len(_MARKERS)], color=f"C{i % 10}", capsize=3, label=name)
    if not xs_all:
        raise FigureSkipped(f"no run recorded {spec.x} and {spec.y}")
    _log_if_wide(ax, "x", xs_all)
    ax.set_xlabel(label(spec.x))
    ax.set_ylabel(label(spec.y))
    ax.grid(alpha=0.3)
    _legend(fig, hue)


def _over_training(fig: Any, spec: FigureSpec, runs: Sequence[RunRecord], hue: Sequence[str],
                   records: Callable[[RunRecord], list[dict[str, Any]]], what: str) -> None:
    ax = fig.add_subplot()
    ax2 = ax.twinx() if spec.y2 else None
    handles, all_x = [], []
    for i, (name, members) in enumerate(_series(runs, hue)):
        members = [r for r in members if records(r)]
        if not members:
            continue
        length = min(len(records(r)) for r in members)
        xs = [mean_std(_number(records(r)[k].get(spec.x)) for r in members).mean for k in range(length)]
        all_x += [x for x in xs if x is not None]
        style = {"color": f"C{i % 10}", "marker": _MARKERS[i % len(_MARKERS)] if length <= 30 else None}
        stats = [mean_std(metric(records(r)[k], spec.y) for r in members) for k in range(length)]
        _band(ax, xs, stats, _scale(spec.y), label=name, **style)
        if ax2 is not None:
            stats2 = [mean_std(metric(records(r)[k], spec.y2) for r in members) for k in range(length)]
            _band(ax2, xs, stats2, _scale(spec.y2), linestyle="--", markerfacecolor="none", **style)
            ax2.set_ylabel(label(spec.y2))
        handles.append(ax.lines[-1])
    if not handles:
        raise FigureSkipped(f"no run recorded {what}")
    if spec.x == "train_flops":
        _log_if_wide(ax, "x", all_x)
    ax.set_xlabel(label(spec.x))
    ax.set_ylabel(label(spec.y))
    ax.grid(alpha=0.3)
    _style_legend(fig, handles, spec, hue)


def _layers(fig: Any, spec: FigureSpec, runs: Sequence[RunRecord], hue: Sequence[str],
            notes: list[str]) -> list[RunRecord]:
    """Per-layer bars; returns the runs shown."""
    series = [(n, [r for r in m if r.summary.get("layers")]) for n, m in _series(runs, hue)]
    series = [(n, m) for n, m in series if m]
    if not series:
        raise FigureSkipped("no run recorded per-layer densities (summary.json has no 'layers')")
    if len(series) > MAX_LAYER_SERIES:
        notes.append(f"per-layer figure: showing the first {MAX_LAYER_SERIES} of {len(series)} groups (name "
                     "fewer with a figures: entry of kind layers and a hue)")
        series = series[:MAX_LAYER_SERIES]
    names: list[str] = []
    for _, members in series:
        for run in members:
            names.extend(row["name"] for row in run.summary["layers"] if row["name"] not in names)
    panels = [p for p in _bar_panels(fig, spec)]
    width = 0.8 / len(series)
    for ax, metric_name in panels:
        values_all = []
        for j, (series_name, members) in enumerate(series):
            stats = [mean_std(_number(next((row.get(metric_name) for row in r.summary["layers"] if row["name"] == n),
                                           None)) for r in members) for n in names]
            xs = [i - 0.4 + width * (j + 0.5) for i in range(len(names))]
            values_all += [s.mean for s in stats if s.mean is not None]
            ax.bar(xs, [s.mean or 0.0 for s in stats], width * 0.92, yerr=[s.std or 0.0 for s in stats], capsize=2,
                   color=f"C{j % 10}", label=series_name)
        if not values_all:
            ax.text(0.5, 0.5, f"no run recorded per-layer {label(metric_name).split(' (')[0]}", ha="center",
                    va="center", transform=ax.transAxes)
        _log_if_wide(ax, "y", values_all)
        short = [n.removesuffix(".weight") for n in names]
        ax.set_xticks(range(len(names)), short, rotation=30 if len(names) > 4 else 0, ha="right" if len(names) > 4
                      else "center", fontsize="small")
        ax.set_xlabel("layer (weight tensor)")
        ax.set_ylabel(label(metric_name))
        ax.grid(axis="y", alpha=0.3)
    if hue:
        _legend(fig, hue)
    return [r for _, members in series for r in members]


def draw(spec: FigureSpec, runs: Sequence[RunRecord], varying: Sequence[str], path: Path) -> list[str]:
    """Draw ``spec`` for ``runs`` into the PNG ``path``; returns notes. FigureSkipped when nothing fits."""
    from matplotlib.figure import Figure

    hue = list(spec.hue) if spec.hue is not None else [k for k in varying if k != spec.x]
    wide = spec.kind in ("bar", "layers") and spec.y2
    fig = Figure(figsize=(12, 4.8) if wide else (9, 4.8), layout="constrained")
    notes: list[str] = []
    if spec.kind == "line":
        _line(fig, spec, runs, hue)
    elif spec.kind == "bar":
        _bar(fig, spec, runs, hue)
    elif spec.kind == "scatter":
        _scatter(fig, spec, runs, hue)
    elif spec.kind == "curve":
        _over_training(fig, spec, runs, hue, lambda r: r.metrics, "per-epoch metrics (metrics.jsonl)")
    elif spec.kind == "updates":
        _over_training(fig, spec, runs, hue, lambda r: r.updates, "topology updates (updates.jsonl)")
    else:
        shown = _layers(fig, spec, runs, hue, notes)
        runs = shown
    what = f"{_title_name(spec.y)}{' and ' + _title_name(spec.y2) if spec.y2 else ''}"
    against = label(spec.x).split(" (")[0]
    first = spec.title or (f"{what} per layer" if spec.kind == "layers" else f"{what} vs {against}")
    title = f"{first}\n{context(runs)}"
    panels = {tuple(ax.get_position().bounds) for ax in fig.axes}
    if len(panels) == 1:  # one panel (a twin y axis included): the title above it, clear of the legend
        fig.axes[0].set_title(title, fontsize="medium")
    else:
        fig.suptitle(title, fontsize="medium")
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    return notes
