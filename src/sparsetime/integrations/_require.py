"""Import an optional dependency, or fail with the ``pip install`` command of the extra that brings it."""
from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, feature: str) -> ModuleType:
    """``import module``; ImportError naming ``pip install 'sparsetime[extra]'`` when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{feature} needs the {module.split('.')[0]!r} package, which is not installed: "
                          f"pip install 'sparsetime[{extra}]'") from exc
