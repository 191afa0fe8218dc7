"""Model registry: name -> factory, and the checked entry point ``build_model``.

Factories take ``(input_shape, num_classes, *, option=...)``; the options a model accepts are its
keyword-only parameters, so a misspelt option is reported instead of silently ignored.
"""
from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Sequence

from torch import nn

ModelFactory = Callable[..., nn.Module]

_REGISTRY: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator registering ``factory`` under ``name`` (lower case, unique)."""

    def decorate(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorate


def available_models() -> list[str]:
    """Names accepted by ``build_model``, sorted."""
    return sorted(_REGISTRY)


def model_options(name: str) -> dict[str, object]:
    """The options model ``name`` accepts, with their defaults."""
    factory = _factory(name)
    return {
        p.name: p.default
        for p in inspect.signature(factory).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def build_model(name: str, input_shape: Sequence[int], num_classes: int, **options: object) -> nn.Module:
    """Build model ``name`` for inputs of shape ``input_shape`` (no batch dim) and ``num_classes`` outputs.

    Raises ValueError for an unknown name, an unknown option, a bad shape or a bad class count.
    """
    factory = _factory(name)
    allowed = model_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"model {name!r} got unknown option(s) {unknown}; allowed options: {sorted(allowed) or 'none'}"
        )
    shape = check_input_shape(input_shape)
    if not _is_int(num_classes) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return factory(shape, int(num_classes), **options)


def check_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    """Return ``input_shape`` as a tuple of positive ints, or raise ValueError."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ValueError(f"input_shape must be a sequence of positive ints, got {input_shape!r}") from None
    if not shape or any(not _is_int(s) or s < 1 for s in shape):
        raise ValueError(f"input_shape must be a non-empty sequence of positive ints, got {input_shape!r}")
    return tuple(int(s) for s in shape)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def image_shape(input_shape: tuple[int, ...], model: str) -> tuple[int, int, int]:
    """Check that a conv net's input shape is (C, H, W) and return it."""
    if len(input_shape) != 3:
        raise ValueError(
            f"model {model!r} needs input_shape (channels, height, width), got {input_shape!r}"
        )
    return input_shape  # type: ignore[return-value]


def _factory(name: str) -> ModelFactory:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(available_models())}")
    return _REGISTRY[name]
