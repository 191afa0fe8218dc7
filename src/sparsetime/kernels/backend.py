"""Which implementation runs the sparse products: numba kernels or the pure-torch fallback.

Numba is a default dependency, but the library works without it. It is imported lazily the first time a kernel is needed; setting the
environment variable ``SPARSETIME_DISABLE_NUMBA=1`` (or calling :func:`set_backend("torch")`)
forces the torch path, so both paths can be tested in one environment. The numba kernels run on
CPU tensors of dtype float32/float64 only; anything else (CUDA, half precision) uses torch.
"""
from __future__ import annotations

import logging
import os
from types import ModuleType

import torch

log = logging.getLogger(__name__)

BACKENDS = ("auto", "numba", "torch")
_NUMBA_DTYPES = (torch.float32, torch.float64)

_forced: str = "auto"
_numba_module: ModuleType | None = None
_numba_checked = False


def numba_disabled_by_env() -> bool:
    """True when ``SPARSETIME_DISABLE_NUMBA`` is set to a true value (1/true/yes/on)."""
    return os.environ.get("SPARSETIME_DISABLE_NUMBA", "").strip().lower() in ("1", "true", "yes", "on")


def numba_kernels() -> ModuleType | None:
    """The compiled-kernel module, or None if numba is missing or disabled."""
    global _numba_module, _numba_checked
    if numba_disabled_by_env() or _forced == "torch":
        return None
    if not _numba_checked:
        _numba_checked = True
        try:
            from . import _numba_impl
            _numba_module = _numba_impl
        except ImportError as exc:  # numba not installed: the torch path still works
            log.info("numba unavailable (%s); sparse kernels use the torch fallback", exc)
            _numba_module = None
    return _numba_module


def numba_available() -> bool:
    """True when the numba kernels can be used (installed and not disabled)."""
    return numba_kernels() is not None


def set_backend(name: str) -> None:
    """Force a backend for the whole process: "auto" (numba when possible), "numba" or "torch"."""
    global _forced
    if name not in BACKENDS:
        raise ValueError(f"unknown sparse backend {name!r}; allowed: {', '.join(BACKENDS)}")
    if name == "numba" and numba_kernels() is None and not numba_disabled_by_env():
        raise ValueError("backend 'numba' requested but numba is not installed "
                         "(pip install numba), allowed here: auto, torch")
    _forced = name


def get_backend() -> str:
    """The backend forced by :func:`set_backend` ("auto" unless changed)."""
    return _forced


def resolve_backend(*tensors: torch.Tensor) -> str:
    """"numba" if the numba kernels can handle these tensors, else "torch"."""
    if numba_kernels() is None:
        return "torch"
    for t in tensors:
        if t.device.type != "cpu" or (t.is_floating_point() and t.dtype not in _NUMBA_DTYPES):
            return "torch"
    return "numba"


#: below this many multiply-adds a kernel runs on one thread: waking a second costs more. Kept
#: small: switching numba's thread count between consecutive calls costs more than it saves on
#: mid-sized kernels (with 2^18 a step of a 3072x1000 layer at 99% sparsity, and of the
#: 784-1000-1000-1000-10 SET MLP, was 5-12% slower on average over interleaved runs)
SERIAL_WORK = 1 << 14


def sync_threads(threads: int | None = None, work: int | None = None) -> None:
    """Make numba use ``threads`` threads (default ``torch.get_num_threads()``), or one thread
    when ``work`` (multiply-adds) is too small to be worth splitting.

    Callers inside autograd's backward should pass the count read during the forward: torch
    reports its default thread count there, not the one set with ``torch.set_num_threads``.
    """
    mod = numba_kernels()
    if mod is None:
        return
    import numba

    want = torch.get_num_threads() if threads is None else int(threads)
    if work is not None and work < SERIAL_WORK:
        want = 1
    want = max(1, min(want, numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != want:
        numba.set_num_threads(want)
