"""The sweep file: a YAML mapping that names a grid of runs.

```yaml
name: density-vs-interval          # the sweep directory: <output_dir>/<name>/
output_dir: runs/sweeps            # relative to the working directory, like sparsetime train
base_config: base.yaml             # optional config file (relative to the sweep file)
base: {dataset: synthetic, epochs: 2, model_options.hidden: [16]}   # overrides on top (or "k=v" strings)
grid:                              # dotted key -> list of values; every combination is a point
  sparsity.update_interval: [2, 8]
  sparsity.density: [0.1, 0.3]
runs:                              # optional list of override mappings, crossed with the grid
  - {sparsity.method: set}
  - {sparsity.method: rigl}
seeds: [0, 1]                      # every point is run once per seed
figures:                           # optional; by default chosen from what varies
  - {kind: line, x: sparsity.update_interval, y: test_accuracy, y2: itop_rate}
slurm: {timeout_min: 60}           # optional: submitit executor parameters (engine submitit)
ray: {num_gpus: 0}                 # optional: Ray task options (engine ray)
```

Everything is checked before any run starts: unknown keys, grid keys the config lacks, an empty
grid and values of the wrong type are refused with the key and the closest valid one.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from sparsetime.train.config import Config, apply_overrides, load_config
from sparsetime.train.yaml_text import load_yaml_file

from .keys import check_config_key, flatten, hint, point_config
from .report.figures import FigureSpec, parse_figures

TOP_KEYS = ("name", "output_dir", "base", "base_config", "grid", "runs", "seeds", "figures", "slurm", "ray")
# keys a point may not set: the sweep decides them
_SWEEP_OWNED = {"seed": "list seeds under the top-level `seeds:` key",
                "output_dir": "the sweep's top-level `output_dir` places every run"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class SweepSpec:
    """A checked sweep file. ``base`` is the config every point starts from."""

    name: str
    output_dir: str
    base: Config
    grid: dict[str, list[Any]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    figures: list[FigureSpec] = field(default_factory=list)
    slurm: dict[str, Any] = field(default_factory=dict)
    ray: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None
    text: str = ""

    @property
    def directory(self) -> Path:
        """``<output_dir>/<name>``: the sweep's run directories and ``index.sqlite``."""
        return Path(self.output_dir) / self.name

    @property
    def varying_keys(self) -> list[str]:
        """The keys the points set (grid keys, then keys of ``runs`` entries), in file order."""
        keys = list(self.grid)
        for run in self.runs:
            keys.extend(k for k in run if k not in keys)
        return keys


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep file."""
    path = Path(path)
    data = load_yaml_file(path, "sweep file")  # safe YAML, no aliases, size-capped, one-line errors
    return parse_sweep(data, path, path.read_text(encoding="utf-8"))


def parse_sweep(data: Any, source: Path | None = None, text: str = "") -> SweepSpec:
    """Check a sweep mapping (as read from YAML); ``source`` locates ``base_config`` and names errors."""
    where = f"sweep file {str(source)!r}" if source else "sweep"
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a mapping with keys {', '.join(TOP_KEYS)}, got {type(data).__name__}")
    for key in data:
        if key not in TOP_KEYS:
            raise ValueError(f"{where}: unknown key {key!r}{hint(str(key), TOP_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{where}: name = {name!r} is invalid; allowed: a non-empty folder name of letters, "
                         "digits, '.', '_' and '-'")
    output_dir = data.get("output_dir", "runs")
    if not isinstance(output_dir, str) or not output_dir:
        raise ValueError(f"{where}: output_dir = {output_dir!r} is invalid; allowed: a directory path")
    base = _base(data, source, where)
    grid = _grid(data.get("grid"), base, where)
    runs = _runs(data.get("runs"), base, where)
    for i, run in enumerate(runs):
        both = sorted(set(run) & set(grid))
        if both:
            raise ValueError(f"{where}: runs[{i}] sets {both[0]!r}, which the grid also sets; a key varies "
                             "in the grid or in runs, not both")
    seeds = _seeds(data.get("seeds"), base, where)
    if "grid" not in data and "runs" not in data and "seeds" not in data:
        raise ValueError(f"{where} names no points; allowed: grid (key -> list of values), runs (a list of "
                         "override mappings) and/or seeds (a list of integers)")
    figures = parse_figures(data.get("figures"), f"{where}: figures")
    slurm = _mapping(data.get("slurm"), f"{where}: slurm")
    ray = _mapping(data.get("ray"), f"{where}: ray")
    return SweepSpec(name, output_dir, base, grid, runs, seeds, figures, slurm, ray, source, text)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a mapping, got {value!r}")
    return dict(value)


def _check_point_key(key: str, where: str) -> None:
    if key in _SWEEP_OWNED:
        raise ValueError(f"{where}: {key!r} cannot be set here; {_SWEEP_OWNED[key]}")
    check_config_key(key, where)


def _apply(base: Config, overrides: Mapping[str, Any], where: str) -> Config:
    for key, value in overrides.items():  # one key at a time, so an error names its key
        try:
            point_config(base, {key: value})
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return point_config(base, overrides)


def _base(data: Mapping[str, Any], source: Path | None, where: str) -> Config:
    config = Config()
    path = data.get("base_config")
    if path is not None:
        if not isinstance(path, str):
            raise ValueError(f"{where}: base_config must be a path to a config file, got {path!r}")
        candidates = [Path(path)] if Path(path).is_absolute() else \
            [*([source.parent / path] if source else []), Path(path)]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise ValueError(f"{where}: base_config {path!r} does not exist (looked at "
                             f"{', '.join(repr(str(p)) for p in candidates)})")
        try:
            config = load_config(found)
        except ValueError as exc:
            raise ValueError(f"{where}: base_config {str(found)!r}: {exc}") from None
    base = data.get("base")
    if base is None:
        return config
    if isinstance(base, list):  # "key=value" strings, as on the sparsetime train command line
        if not all(isinstance(item, str) for item in base):
            raise ValueError(f"{where}: base must be a mapping of config keys or a list of 'key=value' strings")
        for item in base:
            key = item.split("=", 1)[0].strip()
            if key == "output_dir":
                _check_point_key(key, f"{where}: base")
            try:
                config = apply_overrides(config, [item])
            except ValueError as exc:
                raise ValueError(f"{where}: base: {exc}") from None
        return config
    if not isinstance(base, Mapping):
        raise ValueError(f"{where}: base must be a mapping of config keys or a list of 'key=value' strings, "
                         f"got {base!r}")
    flat = flatten(base)
    for key in flat:
        if key == "output_dir":
            _check_point_key(key, f"{where}: base")
        check_config_key(key, f"{where}: base")
    return _apply(config, flat, f"{where}: base")


def _grid(grid: Any, base: Config, where: str) -> dict[str, list[Any]]:
    if grid is None:
        return {}
    if not isinstance(grid, Mapping):
        raise ValueError(f"{where}: grid must be a mapping of config keys to lists of values, got {grid!r}")
    flat = flatten(grid)
    if not flat:
        raise ValueError(f"{where}: grid is empty; give at least one key with a list of values, "
                         "e.g. sparsity.density: [0.05, 0.1]")
    for key, values in flat.items():
        _check_point_key(key, f"{where}: grid key")
        if not isinstance(values, list):
            raise ValueError(f"{where}: grid key {key!r} must map to a list of values, got {values!r} "
                             f"(write [{values!r}] for a single value)")
        if not values:
            raise ValueError(f"{where}: grid key {key!r} has an empty list of values")
        for value in values:
            _apply(base, {key: value}, f"{where}: grid key {key!r} value {value!r}")
    return flat


def _runs(runs: Any, base: Config, where: str) -> list[dict[str, Any]]:
    if runs is None:
        return []
    if not isinstance(runs, list) or not runs:
        raise ValueError(f"{where}: runs must be a non-empty list of override mappings, got {runs!r}")
    out = []
    for i, run in enumerate(runs):
        if not isinstance(run, Mapping):
            raise ValueError(f"{where}: runs[{i}] must be a mapping of config keys to values, got {run!r}")
        flat = flatten(run)
        for key in flat:
            _check_point_key(key, f"{where}: runs[{i}]")
        _apply(base, flat, f"{where}: runs[{i}]")
        out.append(flat)
    return out


def _seeds(seeds: Any, base: Config, where: str) -> list[int]:
    if seeds is None:
        return [base.seed]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in seeds):
        raise ValueError(f"{where}: seeds = {seeds!r} is invalid; allowed: a non-empty list of integers")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{where}: seeds = {seeds!r} repeats a seed")
    return list(seeds)
