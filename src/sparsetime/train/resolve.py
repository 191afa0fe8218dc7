"""Turn a user config into the fully resolved one that is saved and hashed.

Fills the sparsity method's defaults, the model's default options and the run name, after
checking every value, so ``config.yaml`` in a run directory states each choice explicitly.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from .config import Config, default_run_name, validate_config
from .methods import resolve_sparsity


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def resolve_config(config: Config) -> Config:
    """Validated copy of ``config`` with method defaults, model options and name filled in."""
    from sparsetime.models import model_options

    validate_config(config)
    sparsity = resolve_sparsity(config.sparsity)
    options = {k: _plain(v) for k, v in model_options(config.model).items()}
    unknown = sorted(set(config.model_options) - set(options))
    if unknown:
        raise ValueError(f"model {config.model!r} got unknown model_options {unknown}; "
                         f"allowed: {sorted(options) or 'none'}")
    options.update(config.model_options)
    resolved = dataclasses.replace(config, sparsity=sparsity, model_options=options)
    if not resolved.name:
        resolved = dataclasses.replace(resolved, name=default_run_name(resolved))
    return resolved
