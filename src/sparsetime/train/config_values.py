"""Reading config values: a YAML value or a raw ``key=value`` string converted to a field's declared
type (``optim.lr=1`` and ``optim.lr: 1`` both give the float 1.0), with an error naming the key."""
from __future__ import annotations

import math
import types
import typing
from typing import Any

from .yaml_text import load_yaml_text


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
            if abs(int(number)) >= 2**63:
                raise ValueError(f"config key {key!r} = {value!r} is out of range; allowed: |x| < 2**63")
            return int(number)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):  # inf or nan: accepted silently, a run would turn to NaN later
                raise ValueError(f"config key {key!r} = {value!r} is not a finite number")
            return number
        if tp is str:
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
        if origin is list:
            (item_tp,) = typing.get_args(tp) or (Any,)
            if isinstance(value, str):
                text = value.strip()
                value = load_yaml_text(text, f"config key {key!r}") if text.startswith("[") else [
                    v for v in text.split(",") if v.strip()]
            if isinstance(value, tuple):
                value = list(value)
            if not isinstance(value, list):
                raise ValueError
            return [v if item_tp is Any else _coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        if origin is dict or tp is dict:
            if isinstance(value, str):
                value = load_yaml_text(value, f"config key {key!r}") or {}
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except ValueError as exc:
        if str(exc).startswith("config key"):
            raise
        raise ValueError(f"config key {key!r}: cannot read {value!r} as {_type_name(tp)}") from None
    except (TypeError, OverflowError):
        raise ValueError(f"config key {key!r}: cannot read {value!r} as {_type_name(tp)}") from None
    return value


def _type_name(tp: Any) -> str:
    optional, inner = _is_optional(tp)
    name = getattr(inner, "__name__", str(inner)) if typing.get_origin(inner) is None else str(inner)
    return f"{name} or None" if optional else name


def _parse_scalar(text: str) -> Any:
    """Best-effort typing of a free-form override value (inside dict fields); aliases are refused."""
    try:
        return load_yaml_text(text, "an override value")
    except ValueError as exc:
        if "aliases are not allowed" in str(exc) or "larger than" in str(exc):
            raise
        return text
