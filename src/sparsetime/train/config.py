"""Typed run configuration: nested dataclasses, YAML loading, dotted ``key=value`` overrides.

A run is fully described by one :class:`Config`. Files are read with ``yaml.safe_load``; every
key is checked against the dataclass fields (an unknown key is an error that names the closest
valid key), and every value is converted to the field's declared type, so ``optim.lr=1`` and
``optim.lr: 1`` both give the float 1.0. :func:`resolve` fills the method-dependent defaults
(growth criterion, drop fraction, ...) so that the saved ``config.yaml`` states every choice.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sparsetime.core.defaults import RUN_UPDATE_INTERVAL

PROGRESS_MODES = ("auto", "bar", "log", "none")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "multistep", "cosine")

# Fields that do not change what a run computes: left out of the run hash.
NON_RESULT_KEYS = ("name", "output_dir", "data_dir", "device", "progress", "log_interval", "data.num_workers")
# Fields left out of the run hash while they hold their default, so adding them kept the names of
# earlier run directories. A run with another value gets its own directory (its checkpoint stores
# sparse modules instead of dense weights).
HASHED_UNLESS_DEFAULT = {"sparsity.execution": "masked", "world_size": 1, "sparsity.flops_fraction": None}
EXECUTION_MODES = ("masked", "sparse", "auto")


@dataclass
class OptimConfig:
    """Optimiser: SGD (momentum, Nesterov) or Adam/AdamW."""

    name: str = "sgd"
    lr: float = 0.1  # SET at 98% reached 81.9% after 3 epochs at 0.01, 86.1% at 0.1 (docs/results/defaults)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    exclude_bias_norm: bool = False  # no weight decay on biases and normalisation parameters
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, stepped every optimiser step; milestones are fractions of training."""

    name: str = "none"
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    min_lr: float = 0.0  # floor of the cosine schedule


@dataclass
class SparsityConfig:
    """Which sparsifier drives the run. ``None`` fields take the method's default (see resolve)."""

    method: str = "set"
    density: float = 0.02
    distribution: str | None = None
    growth: str | None = None
    update_interval: int | None = RUN_UPDATE_INTERVAL  # see its docstring in the presets
    drop_fraction: float | None = None
    drop_schedule: str | None = None
    min_drop_fraction: float | None = None
    stop_fraction: float | None = None
    dense_layers: list[str] = field(default_factory=list)
    dense_first: bool = False
    dense_last: bool = False
    sparse_init: bool = True
    redistribution: bool | None = None
    options: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments for the method
    # masks that seed a DST run: a pruning method (snip, grasp, synflow, magnitude, random), a masks
    # file ({name: bool tensor}, torch.save) or a run directory whose checkpoint holds masks
    init_mask: str | None = None
    # how sparse layers run: "masked" (dense weight x mask), "sparse" (sparse modules and kernels,
    # O(nnz) memory; CPU) or "auto" (sparse where faster). See DynamicSparsity(execution=...).
    execution: str = "masked"
    # a budget instead of a density: the global density whose inference FLOPs are this fraction of dense
    flops_fraction: float | None = None


@dataclass
class DataConfig:
    """Data loading details beyond the dataset name."""

    augment: bool = True
    validation_size: int = 0
    download: bool = True
    eval_batch_size: int = 1000
    train_subset: int = 0  # use only this many training examples (0 = all), drawn with the seed
    num_workers: int = 0  # loader processes for datasets read from files one by one (image folders)
    options: dict[str, Any] = field(default_factory=dict)  # dataset options, e.g. synthetic train_size


@dataclass
class Config:
    """One training run. The default is SET-ITOP on an MLP 784-1000-1000-10, Fashion-MNIST, 98% sparse."""

    name: str | None = None
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    model: str = "mlp"
    model_options: dict[str, Any] = field(default_factory=dict)  # keyword options of the model
    epochs: int = 5
    extend: float = 1.0  # multiplies epochs; schedule milestones are fractions, so they scale too
    batch_size: int = 128
    label_smoothing: float = 0.0
    seed: int = 0
    world_size: int = 1  # processes of a torchrun launch (set by the runner); the global batch is batch_size * world_size
    output_dir: str = "runs"
    device: str = "auto"
    progress: str = "auto"
    log_interval: int = 100  # steps between progress lines and finiteness checks of the loss
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    data: DataConfig = field(default_factory=DataConfig)

    @property
    def total_epochs(self) -> int:
        """Epochs actually trained: ``round(epochs * extend)``."""
        return max(1, round(self.epochs * self.extend))


# ----------------------------------------------------------------------------- type handling

def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_optional(tp: Any) -> tuple[bool, Any]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", "~", ""}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (a YAML value or a raw override string) to type ``tp``."""
    optional, inner = _is_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in _NONE):
        if optional:
            return None
        raise ValueError(f"config key {key!r} cannot be None; expected {_type_name(tp)}")
    tp = inner
    origin = typing.get_origin(tp)
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if tp is int:
            if isinstance(value, bool):
                raise ValueError
            number = value if isinstance(value, (int, float)) else float(str(value).strip())
            if float(number) != int(number):
                raise ValueError
            return int(number)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if tp is str:
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
        if origin is list:
            (item_tp,) = typing.get_args(tp) or (Any,)
            if isinstance(value, str):
                text = value.strip()
                value = yaml.safe_load(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
            if isinstance(value, tuple):
                value = list(value)
            if not isinstance(value, list):
                raise ValueError
            return [v if item_tp is Any else _coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        if origin is dict or tp is dict:
            if isinstance(value, str):
                value = yaml.safe_load(value) or {}
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except (ValueError, TypeError, yaml.YAMLError):
        raise ValueError(f"config key {key!r}: cannot read {value!r} as {_type_name(tp)}") from None
    return value


def _type_name(tp: Any) -> str:
    optional, inner = _is_optional(tp)
    name = getattr(inner, "__name__", str(inner)) if typing.get_origin(inner) is None else str(inner)
    return f"{name} or None" if optional else name


def _parse_scalar(text: str) -> Any:
    """Best-effort typing of a free-form override value (inside dict fields)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


# ----------------------------------------------------------------------------- keys

def valid_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key a config accepts (dict-valued fields accept any sub-key below them)."""
    keys: list[str] = []
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            keys.extend(valid_keys(tp, f"{prefix}{f.name}."))
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def _unknown_key(key: str) -> ValueError:
    keys = valid_keys()
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    if not close:  # e.g. a bare field name given without its section
        tail = key.rsplit(".", 1)[-1]
        close = [k for k in keys if k.rsplit(".", 1)[-1] == tail][:1]
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(keys)}"
    return ValueError(f"unknown config key {key!r}{hint}")


def _set(obj: Any, parts: list[str], value: Any, full_key: str, raw: bool) -> None:
    name = parts[0]
    names = {f.name for f in dataclasses.fields(obj)}
    if name not in names:
        raise _unknown_key(full_key)
    tp = _hints(type(obj))[name]
    if dataclasses.is_dataclass(tp):
        if len(parts) == 1:
            if not isinstance(value, Mapping):
                raise ValueError(f"config key {full_key!r} is a section; set its fields, e.g. {full_key}.<field>=...")
            for k, v in value.items():
                _set(getattr(obj, name), [str(k)], v, f"{full_key}.{k}", raw)
            return
        _set(getattr(obj, name), parts[1:], value, full_key, raw)
        return
    if len(parts) > 1:
        if typing.get_origin(tp) is dict:  # free-form mapping: model_options.hidden=[16]
            target = getattr(obj, name)
            for p in parts[1:-1]:
                target = target.setdefault(p, {})
                if not isinstance(target, dict):
                    raise ValueError(f"config key {full_key!r}: {p!r} is not a mapping")
            target[parts[-1]] = _parse_scalar(value) if raw and isinstance(value, str) else value
            return
        raise _unknown_key(full_key)
    setattr(obj, name, _coerce(value, tp, full_key))


# ----------------------------------------------------------------------------- public API

def config_from_dict(data: Mapping[str, Any] | None, base: Config | None = None) -> Config:
    """Build a Config from a nested mapping (as read from YAML), on top of ``base`` or the defaults."""
    config = copy.deepcopy(base) if base is not None else Config()
    if data is None:
        return config
    if not isinstance(data, Mapping):
        raise ValueError(f"a config must be a mapping of keys to values, got {type(data).__name__}")
    for key, value in data.items():
        _set(config, [str(key)], value, str(key), raw=False)
    return config


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config (or start from the defaults) and apply ``key=value`` overrides."""
    data = None
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file {str(path)!r} does not exist")
        with path.open("r", encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    return apply_overrides(config_from_dict(data), overrides)


def apply_overrides(config: Config, overrides: Iterable[str]) -> Config:
    """Return a copy of ``config`` with dotted ``key=value`` strings applied (values typed by field)."""
    config = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value, e.g. sparsity.density=0.05")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ValueError(f"override {item!r} has an empty key")
        _set(config, key.split("."), value, key, raw=True)
    return config


def validate_config(config: Config) -> None:
    """Check value ranges and names that do not depend on registries; raise ValueError if bad."""
    def need(ok: bool, key: str, value: Any, allowed: str) -> None:
        if not ok:
            raise ValueError(f"config key {key!r} = {value!r} is invalid; allowed: {allowed}")

    need(config.epochs >= 1, "epochs", config.epochs, "an integer >= 1")
    need(config.extend > 0, "extend", config.extend, "a number > 0")
    need(config.batch_size >= 1, "batch_size", config.batch_size, "an integer >= 1")
    need(config.world_size >= 1, "world_size", config.world_size, "an integer >= 1 (set by torchrun)")
    need(0.0 <= config.label_smoothing < 1.0, "label_smoothing", config.label_smoothing, "0 <= x < 1")
    need(config.progress in PROGRESS_MODES, "progress", config.progress, ", ".join(PROGRESS_MODES))
    need(config.log_interval >= 1, "log_interval", config.log_interval, "an integer >= 1")
    o = config.optim
    need(o.name in OPTIMIZERS, "optim.name", o.name, ", ".join(OPTIMIZERS))
    need(o.lr > 0, "optim.lr", o.lr, "a number > 0")
    need(o.momentum >= 0, "optim.momentum", o.momentum, "a number >= 0")
    need(o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, "a number >= 0")
    need(len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), "optim.betas", o.betas, "two numbers in [0, 1)")
    need(not (o.nesterov and o.name == "sgd" and o.momentum == 0), "optim.nesterov", o.nesterov,
         "false when optim.momentum is 0 (Nesterov needs momentum)")
    sc = config.schedule
    need(sc.name in SCHEDULES, "schedule.name", sc.name, ", ".join(SCHEDULES))
    need(all(0 < m < 1 for m in sc.milestones), "schedule.milestones", sc.milestones,
         "fractions of training strictly between 0 and 1")
    need(sc.gamma > 0, "schedule.gamma", sc.gamma, "a number > 0")
    need(sc.warmup_epochs >= 0, "schedule.warmup_epochs", sc.warmup_epochs, "a number >= 0")
    need(sc.min_lr >= 0, "schedule.min_lr", sc.min_lr, "a number >= 0")
    sp = config.sparsity
    need(0 < sp.density <= 1, "sparsity.density", sp.density, "0 < density <= 1")
    need(sp.update_interval is None or sp.update_interval >= 1, "sparsity.update_interval",
         sp.update_interval, "an integer >= 1, or none for a static mask")
    need(sp.drop_fraction is None or 0 <= sp.drop_fraction <= 1, "sparsity.drop_fraction",
         sp.drop_fraction, "0 <= x <= 1")
    need(sp.min_drop_fraction is None or 0 <= sp.min_drop_fraction <= 1, "sparsity.min_drop_fraction",
         sp.min_drop_fraction, "0 <= x <= 1")
    need(sp.stop_fraction is None or 0 <= sp.stop_fraction <= 1, "sparsity.stop_fraction",
         sp.stop_fraction, "0 <= x <= 1")
    need(sp.flops_fraction is None or 0 < sp.flops_fraction <= 1, "sparsity.flops_fraction", sp.flops_fraction,
         "0 < x <= 1 (inference FLOPs as a fraction of dense), or none")
    d = config.data
    need(d.validation_size >= 0, "data.validation_size", d.validation_size, "an integer >= 0")
    need(d.eval_batch_size >= 1, "data.eval_batch_size", d.eval_batch_size, "an integer >= 1")
    need(d.train_subset >= 0, "data.train_subset", d.train_subset, "an integer >= 0 (0 = all)")
    need(d.num_workers >= 0, "data.num_workers", d.num_workers, "an integer >= 0")


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict of a config (safe for YAML and JSON)."""
    return dataclasses.asdict(config)


def config_to_yaml(config: Config) -> str:
    """YAML text of a config, keys in declaration order."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=None)


def config_hash(config: Config, length: int = 8) -> str:
    """Hash of everything that changes results (``NON_RESULT_KEYS`` excluded)."""
    data = config_to_dict(config)
    omitted = [*NON_RESULT_KEYS, *(k for k, default in HASHED_UNLESS_DEFAULT.items() if _get(data, k) == default)]
    for key in omitted:
        *parents, last = key.split(".")
        section = data
        for p in parents:
            section = section[p]
        section.pop(last, None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def _get(data: Mapping[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


def default_run_name(config: Config) -> str:
    """``<method>-<model>-<dataset>-d<density>``."""
    s = config.sparsity
    return f"{s.method}-{config.model}-{config.dataset}-d{s.density:g}"


def run_directory(config: Config) -> Path:
    """``<output_dir>/<name>-<hash>`` of a resolved config."""
    name = config.name or default_run_name(config)
    return Path(config.output_dir) / f"{name}-{config_hash(config)}"
