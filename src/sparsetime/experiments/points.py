"""The points of a sweep: grid cross product x runs x seeds, each a resolved config of the runner.

Every point is exactly what ``sparsetime train <base> <point overrides> seed=S
output_dir=<output_dir>/<name>`` would train: same resolved config, same hash, same run
directory, so finished points are found again and interrupted ones resume. Points that resolve
to the same run (e.g. ``sparsity.update_interval`` for a static mask, which the method fixes)
are kept once.
"""
from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsetime.train.config import Config, config_hash, config_to_dict, run_directory
from sparsetime.train.resolve import resolve_config

from .keys import point_config
from .sweep_file import SweepSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its position, the keys it sets, its seed and its resolved config."""

    index: int
    overrides: dict[str, Any]
    seed: int
    config: Config

    @property
    def run_dir(self) -> Path:
        """The runner's run directory (under the sweep directory)."""
        return run_directory(self.config)

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)

    def describe(self) -> str:
        """``sparsity.density=0.1 seed=0``."""
        return describe(self.overrides, self.seed)

    def config_json(self) -> str:
        """The resolved config as JSON (what an engine's worker rebuilds the run from)."""
        return json.dumps(config_to_dict(self.config), sort_keys=True)


def describe(overrides: dict[str, Any], seed: int) -> str:
    """The keys a point sets and its seed, as ``key=value`` words."""
    parts = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in overrides.items()]
    return " ".join([*parts, f"seed={seed}"])


def expand_points(spec: SweepSpec) -> list[Point]:
    """Every point of ``spec``, resolved (bad values are refused here, before anything runs)."""
    keys = list(spec.grid)
    combos = [dict(zip(keys, values)) for values in itertools.product(*spec.grid.values())] if keys else [{}]
    runs = spec.runs or [{}]
    points: list[Point] = []
    seen: dict[Path, Point] = {}
    for combo, run in itertools.product(combos, runs):
        overrides = {**combo, **run}
        for seed in spec.seeds:
            config = point_config(spec.base, {**overrides, "seed": seed, "output_dir": str(spec.directory),
                                              "progress": "none"})
            try:
                point = Point(len(points), overrides, seed, resolve_config(config))
            except ValueError as exc:
                raise ValueError(f"sweep {spec.name!r}: point {describe(overrides, seed)}: {exc}") from None
            same = seen.get(point.run_dir)
            if same is not None:
                log.warning("sweep %s: point %s is the same run as %s (%s); it runs once", spec.name,
                            point.describe(), same.describe(), point.run_dir.name)
                continue
            seen[point.run_dir] = point
            points.append(point)
    return points
