"""Engines that run a sweep's points: ``local`` (worker processes), ``ray`` (Ray tasks), ``submitit`` (SLURM).

Each engine module has ``check(options)`` (called before anything is written) and
``run(index, workers, options, verbose)``; all of them run points through
:func:`sparsetime.experiments.execute.run_claimed`, so they write the same run directories and
the same index. Ray and submitit are optional extras, imported only when their engine is used.
"""
from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

ENGINES = ("local", "ray", "submitit")
_MODULES = {"local": "local", "ray": "ray_tasks", "submitit": "slurm"}
log = logging.getLogger(__name__)


def get_engine(name: str) -> ModuleType:
    """The module of engine ``name``; ValueError naming the engines otherwise."""
    if name not in _MODULES:
        raise ValueError(f"engine {name!r} is not known; allowed: {', '.join(ENGINES)}")
    return importlib.import_module(f"{__name__}.{_MODULES[name]}")


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency, or raise ValueError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"this engine needs {module}, which is not installed; install it with "
                         f"`pip install sparsetime[{extra}]`") from None


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_workers(workers: int) -> None:
    """ValueError unless ``workers`` is an integer >= 1."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers {workers!r} is invalid; allowed: an integer >= 1")


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Torch threads for each of ``workers`` concurrent points so that workers x threads <= cores."""
    check_workers(workers)
    cores = cores or available_cores()
    if workers > cores:
        log.warning("%d workers on %d CPU cores: each point gets 1 thread and the cores are oversubscribed",
                    workers, cores)
    return max(1, cores // workers)
