"""Which figures a report draws: the ``figures:`` entries of a sweep file, or a choice made from what varies.

A figure is ``kind`` + ``x`` + ``y`` (+ ``y2`` on a second axis or panel, + ``hue``: the keys that
tell the lines apart; by default every other key that varies). Kinds:

- ``line``: a summary metric against a numeric config key (accuracy vs update interval ΔT, batch
  size, density), mean over seeds with a ±std band;
- ``bar``: a summary metric per value of a config key (accuracy and Rs per growth method);
- ``scatter``: one summary metric against another (accuracy vs training FLOPs), ±std bars;
- ``curve``: a per-epoch metric over training (``x``: epoch, step or train_flops);
- ``updates``: a per-update metric over training (Rs after every topology update);
- ``layers``: per-layer density and Rs at the end of training.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..keys import check_config_key, hint

SUMMARY_METRICS = ("test_accuracy", "best_test_accuracy", "train_accuracy", "validation_accuracy", "train_test_gap",
                   "test_loss", "train_loss", "itop_rate", "density", "train_flops", "inference_flops",
                   "train_seconds", "topology_updates")
EPOCH_METRICS = ("test_accuracy", "train_accuracy", "validation_accuracy", "train_test_gap", "test_loss",
                 "train_loss", "itop_rate", "density", "lr", "train_flops")
UPDATE_METRICS = ("itop_rate", "replaced_fraction", "density", "drop_fraction", "hamming")
LAYER_METRICS = ("density", "itop_rate")
KINDS = ("line", "bar", "scatter", "curve", "updates", "layers")
# the x axis each kind accepts: None = a config key; a tuple = those names only
_X = {"line": None, "bar": None, "scatter": SUMMARY_METRICS, "curve": ("epoch", "step", "train_flops"),
      "updates": ("step", "epoch"), "layers": ("layer",)}
_Y = {"line": SUMMARY_METRICS, "bar": SUMMARY_METRICS, "scatter": SUMMARY_METRICS, "curve": EPOCH_METRICS,
      "updates": UPDATE_METRICS, "layers": LAYER_METRICS}
_DEFAULT_X = {"curve": "epoch", "updates": "step", "layers": "layer"}
ENTRY_KEYS = ("kind", "x", "y", "y2", "hue", "title")


@dataclass(frozen=True)
class FigureSpec:
    """One figure. ``hue`` None: every varying key other than ``x``."""

    kind: str
    x: str
    y: str
    y2: str | None = None
    hue: tuple[str, ...] | None = None
    title: str | None = None

    @property
    def slug(self) -> str:
        """File name stem, e.g. ``line-test_accuracy-vs-sparsity.update_interval``."""
        y = self.y + (f"+{self.y2}" if self.y2 else "")
        return f"{self.kind}-{y}-vs-{self.x}".replace("/", "_")


def parse_figure(entry: Any, where: str) -> FigureSpec:
    """A FigureSpec from one ``figures:`` entry; ValueError naming ``where``, the bad key and what is allowed."""
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be a mapping with keys {', '.join(ENTRY_KEYS)}, got {entry!r}")
    for key in entry:
        if key not in ENTRY_KEYS:
            raise ValueError(f"{where}: unknown key {key!r}{hint(str(key), ENTRY_KEYS)}")
    kind = entry.get("kind", "line")
    if kind not in KINDS:
        raise ValueError(f"{where}: kind {kind!r} is not known{hint(str(kind), KINDS)}")
    x = entry.get("x", _DEFAULT_X.get(kind))
    if x is None:
        raise ValueError(f"{where}: kind {kind!r} needs x (a config key such as sparsity.update_interval)")
    _check_name(x, _X[kind], f"{where}: x")
    if "y" not in entry:
        raise ValueError(f"{where}: y is missing; allowed for kind {kind!r}: {', '.join(_Y[kind])}")
    _check_name(entry["y"], _Y[kind], f"{where}: y")
    y2 = entry.get("y2")
    if y2 is not None:
        _check_name(y2, _Y[kind], f"{where}: y2")
    hue = entry.get("hue")
    if hue is not None:
        hue = (hue,) if isinstance(hue, str) else hue
        if not isinstance(hue, Sequence) or not hue:
            raise ValueError(f"{where}: hue must be a config key or a list of them, got {entry['hue']!r}")
        for key in hue:
            check_config_key(key, f"{where}: hue")
        hue = tuple(hue)
    title = entry.get("title")
    if title is not None and not isinstance(title, str):
        raise ValueError(f"{where}: title must be a string, got {title!r}")
    return FigureSpec(kind, x, entry["y"], y2, hue, title)


def _check_name(value: Any, allowed: tuple[str, ...] | None, where: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string, got {value!r}")
    if allowed is None:
        check_config_key(value, where)
    elif value not in allowed:
        raise ValueError(f"{where} = {value!r} is not known{hint(value, allowed)}")


def parse_figures(entries: Any, where: str = "figures") -> list[FigureSpec]:
    """FigureSpecs of a ``figures:`` list (None: none named)."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ValueError(f"{where} must be a list of figure entries (kind, x, y, y2, hue), got {entries!r}")
    return [parse_figure(e, f"{where}[{i}]") for i, e in enumerate(entries)]


# ----------------------------------------------------------------------------- automatic choice

_NUMERIC_FIRST = ("sparsity.update_interval", "sparsity.density", "batch_size", "extend", "sparsity.drop_fraction")
_CATEGORICAL = ("sparsity.growth", "sparsity.method", "sparsity.distribution")


def choose_figures(varying: Sequence[str], numeric: Mapping[str, bool], *, has_updates: bool, has_layers: bool,
                   runs: int) -> list[FigureSpec]:
    """The papers' figures that fit what varies.

    ``numeric[key]`` says whether every value of a varying key is a number. ΔT gets accuracy with
    Rs on a second axis (ITOP Fig. 3); growth method / method get accuracy and Rs bars (Fig. 5);
    batch size accuracy (Fig. 6); density accuracy and the train-test gap (Figs. 7, 8); other
    numeric keys a line, other keys bars. Accuracy over training (Fig. 4), accuracy vs training
    FLOPs, Rs over steps and per-layer bars are added whenever the runs recorded them.
    """
    figures: list[FigureSpec] = []
    ordered = [k for k in _NUMERIC_FIRST if k in varying] + [k for k in varying if k not in _NUMERIC_FIRST]
    for key in ordered:
        if key == "sparsity.update_interval" and numeric.get(key):
            figures.append(FigureSpec("line", key, "test_accuracy", "itop_rate"))
        elif key == "sparsity.density" and numeric.get(key):
            figures.append(FigureSpec("line", key, "test_accuracy"))
            figures.append(FigureSpec("line", key, "train_test_gap"))
        elif key in _CATEGORICAL or not numeric.get(key):
            figures.append(FigureSpec("bar", key, "test_accuracy", "itop_rate"))
        else:
            figures.append(FigureSpec("line", key, "test_accuracy"))
    figures.append(FigureSpec("curve", "epoch", "test_accuracy"))
    if runs > 1:
        figures.append(FigureSpec("scatter", "train_flops", "test_accuracy"))
    if has_updates:
        figures.append(FigureSpec("updates", "step", "itop_rate"))
    if has_layers:
        figures.append(FigureSpec("layers", "layer", "density", "itop_rate"))
    return figures
