"""One trainer per run directory: an advisory lock, and the leftovers of a killed write.

Two ``sparsetime train`` processes on one run directory would both train and interleave its log.
The first takes ``<run>/.lock`` (``fcntl.flock``, released by the kernel when the process dies,
so a killed run never leaves a stale lock) and writes its pid into it; the second stops with an
error naming that pid. Once the lock is held, temporary files of an atomic write that a kill
interrupted (``.<name>.*.tmp``) are removed.
"""
from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock, runs are not protected
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


class RunLockedError(ValueError):
    """Another process is training this run directory."""


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock while the block runs; RunLockedError if another process has it."""
    if fcntl is None:
        yield
        return
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", errors="replace").strip() or "another process"
            raise RunLockedError(f"run {str(run_dir)!r} is being trained by {holder}; wait for it to finish or stop "
                                 "it (a killed process releases the lock by itself)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}".encode(), 0)
        remove_partial_writes(run_dir)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def remove_partial_writes(run_dir: Path) -> list[Path]:
    """Delete the temporary files of atomic writes that never finished; returns what was removed."""
    removed = []
    for leftover in run_dir.glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed.append(leftover)
    return removed
