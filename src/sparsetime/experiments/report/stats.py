"""Groups of runs that differ only in their seed, and mean ± std over each group.

The std is the sample standard deviation (ddof = 1, ``statistics.stdev``); a group of one run
has none. Groups are told apart by the keys that vary: a sweep's own keys first, then any other
config key that differs and is not already determined by the chosen ones (a method's defaults,
e.g. RigL's growth criterion, add no column of their own).
"""
from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .collect import RunRecord

# keys that do not tell results apart (the seed is what a group averages over)
# and ``sparsity.options.previous``, the directory of a lottery level's previous level: one per seed)
NOT_GROUPING = ("seed", "name", "output_dir", "data_dir", "device", "progress", "log_interval", "data.num_workers",
                "sparsity.options.previous")
PERCENT_METRICS = ("test_accuracy", "best_test_accuracy", "train_accuracy", "validation_accuracy", "train_test_gap",
                   "supermask_test_accuracy")


def hashable(value: Any) -> Any:
    """A comparable, hashable stand-in for a config value (lists and mappings as JSON)."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


def metric(record: dict[str, Any], name: str) -> float | None:
    """``name`` from a summary or epoch record; ``train_test_gap`` = train accuracy - test accuracy."""
    if name == "train_test_gap":
        train, test = record.get("train_accuracy"), record.get("test_accuracy")
        return None if train is None or test is None else float(train) - float(test)
    value = record.get(name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Stat:
    """Mean, sample std (None for fewer than two values) and count of the values present."""

    mean: float | None
    std: float | None
    n: int


def mean_std(values: Iterable[float | None]) -> Stat:
    """Mean ± sample std of the finite values."""
    present = [v for v in values if v is not None and math.isfinite(v)]
    if not present:
        return Stat(None, None, 0)
    return Stat(statistics.fmean(present), statistics.stdev(present) if len(present) > 1 else None, len(present))


def _determined(key: str, chosen: Sequence[str], runs: Sequence[RunRecord]) -> bool:
    """Whether the values of ``chosen`` fix the value of ``key`` in every run."""
    seen: dict[tuple[Any, ...], Any] = {}
    for run in runs:
        signature = tuple(hashable(run.config.get(k)) for k in chosen)
        value = hashable(run.config.get(key))
        if seen.setdefault(signature, value) != value:
            return False
    return True


def varying_keys(runs: Sequence[RunRecord], preferred: Sequence[str] = ()) -> list[str]:
    """The keys that tell the runs apart, ``preferred`` (a sweep's keys) first, seeds excluded."""
    keys: list[str] = []
    for run in runs:
        keys.extend(k for k in run.config if k not in keys)
    differing = [k for k in keys if len({hashable(r.config.get(k)) for r in runs}) > 1]
    ordered = [k for k in preferred if k in differing and k != "seed"]
    ordered += [k for k in differing if k not in ordered and k not in NOT_GROUPING]
    chosen: list[str] = []
    for key in ordered:
        if not _determined(key, chosen, runs):
            chosen.append(key)
    return chosen


@dataclass
class Group:
    """Runs that share the values of the varying keys."""

    values: dict[str, Any]
    runs: list[RunRecord]

    def stat(self, name: str) -> Stat:
        return mean_std(metric(r.summary, name) for r in self.runs)

    def label(self, keys: Sequence[str] | None = None) -> str:
        """``density=0.1, growth=gradient`` (last part of each dotted key)."""
        keys = list(self.values) if keys is None else keys
        return ", ".join(f"{k.rsplit('.', 1)[-1]}={format_value(self.values[k])}" for k in keys) or "all runs"


def format_value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return value if isinstance(value, str) else json.dumps(value)


def sort_key(value: Any, first_seen: dict[Any, int] | None = None) -> tuple[int, Any]:
    """None first, then numbers in order, then everything else in order of first appearance (or as text)."""
    if value is None:
        return (0, 0)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, value)
    key = hashable(value)
    return (2, first_seen[key]) if first_seen is not None and key in first_seen else (3, str(key))


def appearance(values: Iterable[Any]) -> dict[Any, int]:
    """Position of each distinct value's first appearance (a sweep lists its runs in file order)."""
    order: dict[Any, int] = {}
    for value in values:
        order.setdefault(hashable(value), len(order))
    return order


def group_runs(runs: Sequence[RunRecord], keys: Sequence[str]) -> list[Group]:
    """Runs grouped by the values of ``keys``; numbers in order, other values as the runs first show them."""
    groups: dict[tuple[Any, ...], Group] = {}
    for run in runs:
        values = {k: run.config.get(k) for k in keys}
        signature = tuple(hashable(v) for v in values.values())
        groups.setdefault(signature, Group(values, [])).runs.append(run)
    seen = {k: appearance(r.config.get(k) for r in runs) for k in keys}
    return sorted(groups.values(), key=lambda g: tuple(sort_key(g.values[k], seen[k]) for k in keys))
