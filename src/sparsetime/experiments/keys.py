"""Dotted config keys in sweep files: checking them, flattening nested mappings, building a point's config.

A sweep names config fields the way ``sparsetime train`` overrides do (``sparsity.density``,
``model_options.hidden``). Keys below a free-form mapping field (``model_options``,
``sparsity.options``, ``data.options``) are accepted as they are; every other key must be a
field of the config, and an unknown one is refused with the closest valid key.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from sparsetime.train.config import Config, config_from_dict, config_to_dict, valid_keys


@lru_cache(maxsize=1)
def _fields() -> tuple[frozenset[str], tuple[str, ...]]:
    """(every leaf key, the leaf keys holding a free-form mapping)."""
    keys = valid_keys()
    defaults = config_to_dict(Config())
    mappings = []
    for key in keys:
        value: Any = defaults
        for part in key.split("."):
            value = value[part]
        if isinstance(value, dict):
            mappings.append(key)
    return frozenset(keys), tuple(mappings)


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice most like ``word`` (or one with the same last dotted part), if any is close."""
    choices = list(choices)
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    if match:
        return match[0]
    tail = word.rsplit(".", 1)[-1]
    same_tail = [c for c in choices if c.rsplit(".", 1)[-1] == tail]
    return same_tail[0] if same_tail else None


def hint(word: str, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` or the list of choices."""
    choices = list(choices)
    match = closest(word, choices)
    return f"; did you mean {match!r}?" if match else f"; allowed: {', '.join(choices)}"


def is_config_key(key: str) -> bool:
    """Whether ``key`` names a config field or a key below a free-form mapping field."""
    leaves, mappings = _fields()
    return key in leaves or any(key.startswith(m + ".") for m in mappings)


def check_config_key(key: str, where: str) -> None:
    """Raise ValueError naming ``where`` and the closest valid key unless ``key`` is a config key."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"{where}: keys must be non-empty strings, got {key!r}")
    if not is_config_key(key):
        leaves, _ = _fields()
        raise ValueError(f"{where}: unknown config key {key!r}{hint(key, sorted(leaves))}")


def _descends(key: str) -> bool:
    """Whether a mapping under ``key`` is a section (or free-form mapping) to flatten into dotted keys."""
    leaves, mappings = _fields()
    if key in mappings or any(key.startswith(m + ".") for m in mappings):
        return True
    return key not in leaves and any(k.startswith(key + ".") for k in leaves)


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"sparsity": {"density": 0.1}}`` -> ``{"sparsity.density": 0.1}`` (free-form mappings merge key by key)."""
    out: dict[str, Any] = {}
    for k, value in mapping.items():
        key = f"{prefix}{k}"
        if isinstance(value, Mapping) and value and _descends(key):
            out.update(flatten(value, key + "."))
        else:
            out[key] = value
    return out


def point_config(base: Config, overrides: Mapping[str, Any]) -> Config:
    """``base`` with dotted ``overrides`` (YAML-typed values) applied; values are converted to the field types.

    Keys below free-form mappings are merged into the base's mapping rather than replacing it.
    """
    data = config_to_dict(base)
    for key, value in overrides.items():
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"config key {key!r}: {'.'.join(parts[:i + 1])!r} is not a mapping")
        node[parts[-1]] = value
    return config_from_dict(data)
