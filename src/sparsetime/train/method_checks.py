"""Checks of ``sparsity.options`` values shared by the runner's methods.

Each raises ValueError naming the key, the bad value and what is allowed, at resolve time, before
anything is written.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCOPES = ("global", "layer")


def check_options(method: str, options: Mapping[str, Any], allowed: set[str]) -> None:
    """ValueError unless every key of ``options`` is in ``allowed``."""
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"sparsity.options {unknown} are not options of method {method!r}; "
                         f"allowed: {', '.join(sorted(allowed)) or 'none'}")


def check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    """ValueError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{key} = {value!r} is invalid; allowed: {', '.join(allowed)}")


def check_open_fraction(key: str, value: Any) -> None:
    """ValueError unless ``value`` is a number strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ValueError(f"{key} = {value!r} is invalid; allowed: a number strictly between 0 and 1")


def check_int(key: str, value: Any, minimum: int) -> None:
    """ValueError unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} = {value!r} is invalid; allowed: an integer >= {minimum}")
