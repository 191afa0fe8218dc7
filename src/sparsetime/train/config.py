"""Typed run configuration: YAML loading, dotted ``key=value`` overrides, validation, the run hash.

A run is fully described by one :class:`Config` (its schema: :mod:`sparsetime.train.config_schema`).
Files are read as safe YAML without aliases (:mod:`sparsetime.train.yaml_text`); every key is
checked against the dataclass fields (an unknown key is an error that names the closest valid
key), and every value is converted to the field's declared type
(:mod:`sparsetime.train.config_values`). :func:`resolve` fills the
method-dependent defaults (growth criterion, drop fraction, ...) so that the saved ``config.yaml``
states every choice.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import re
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .config_schema import (EXECUTION_MODES, HASHED_UNLESS_DEFAULT, NON_RESULT_KEYS, OPTIMIZERS, PROGRESS_MODES,
                            SCHEDULES, Config, DataConfig, OptimConfig, ScheduleConfig, SparsityConfig)
from .config_values import _coerce, _hints, _parse_scalar
from .yaml_text import load_yaml_file

#: a run name: one safe path component, never ``.`` or ``..`` (a name like ``../x`` would escape output_dir)
SAFE_NAME = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9_][A-Za-z0-9._-]{0,119}")

__all__ = ["EXECUTION_MODES", "HASHED_UNLESS_DEFAULT", "NON_RESULT_KEYS", "OPTIMIZERS", "PROGRESS_MODES", "SCHEDULES",
           "Config", "DataConfig", "OptimConfig", "ScheduleConfig", "SparsityConfig", "apply_overrides",
           "config_from_dict", "config_hash", "config_to_dict", "config_to_yaml", "default_run_name", "load_config",
           "run_directory", "valid_keys", "validate_config"]

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
    data = None if path is None else load_yaml_file(path, "config file")
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

    need(config.name is None or SAFE_NAME.fullmatch(config.name) is not None, "name", config.name,
         "one path component of letters, digits, '.', '_' and '-' (at most 120 characters, not '.' or '..'), "
         "since the run directory is <output_dir>/<name>-<hash>")
    need(0 <= config.seed < 2**63, "seed", config.seed, "an integer with 0 <= seed < 2**63")
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
