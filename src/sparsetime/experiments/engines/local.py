"""The local engine: ``workers`` processes on this machine, each claiming points from the index until none is left.

Each worker runs ``cores // workers`` torch (and OpenMP / numba) threads. A worker that dies (a
crash, the OOM killer) leaves its point ``failed`` with the exit signal as the reason and is
replaced while points remain. Workers die with the sweep process (parent-death signal on Linux,
and a watch on the parent elsewhere), so a killed sweep leaves stale claims that the next run
takes over, resuming those points from their checkpoints.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from ..execute import run_claimed
from ..index import SweepIndex
from ..owner import Owner
from . import threads_per_worker

log = logging.getLogger(__name__)
STOP_GRACE_SECONDS = 10.0
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def check(options: dict[str, Any]) -> None:
    """Nothing to check: the local engine needs nothing beyond sparsetime."""


def run(index: SweepIndex, workers: int, options: dict[str, Any], verbose: bool) -> None:
    """Run every claimable point of ``index`` with ``workers`` worker processes; returns when none is left."""
    threads = threads_per_worker(workers)
    context = multiprocessing.get_context("spawn")  # no fork of a process that already runs torch threads
    alive: dict[Any, Any] = {}

    def start() -> None:
        args = (str(index.sweep_dir), threads, os.getpid(), verbose)
        process = context.Process(target=worker_main, args=args, name="sparsetime-sweep-worker")
        with _thread_environment(threads):
            process.start()
        alive[process.sentinel] = process

    for _ in range(min(workers, index.count_claimable())):
        start()
    log.info("local engine: %d worker(s) x %d thread(s)", len(alive), threads)
    try:
        while alive:
            for sentinel in multiprocessing.connection.wait(list(alive)):
                process = alive.pop(sentinel)
                process.join()
                if process.exitcode != 0:
                    dead = Owner(Owner.current().host, process.pid)
                    reason = f"worker process died: {_describe_exit(process.exitcode)}"
                    failed = index.fail_orphans(reason, owner=dead)
                    for name in failed:
                        log.warning("point %s failed: %s", name, reason)
                    if not failed:  # it died before claiming: starting another would only die the same way
                        log.warning("a worker process died before it ran a point (%s)", reason)
                    elif index.count_claimable() > len(alive):
                        start()
    except BaseException:  # interrupted: workers give their claims back on their own interrupt, then stop
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in alive.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()  # its claim becomes stale and the next run takes it over
                process.join()
        raise


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


@contextlib.contextmanager
def _thread_environment(threads: int) -> Iterator[None]:
    """Thread-count variables a spawned worker inherits (read when its libraries load)."""
    saved = {k: os.environ.get(k) for k in _THREAD_VARIABLES}
    os.environ.update({k: str(threads) for k in _THREAD_VARIABLES})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _die_with_parent(parent: int) -> None:
    """End this worker when the sweep process ends, however it ends."""
    libc_name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    if libc_name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(libc_name, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _console(verbose: bool) -> None:
    """Warnings of every module, plus the sweep's progress lines when ``verbose``, on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [worker %(process)d] %(message)s", datefmt="%H:%M:%S"))
    handler.addFilter(lambda r: r.levelno >= logging.WARNING
                      or (verbose and r.name.startswith("sparsetime.experiments")))
    logger = logging.getLogger("sparsetime")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def worker_main(sweep_dir: str, threads: int, parent: int, verbose: bool) -> None:
    """A worker process: claim and run points until none is claimable."""
    _die_with_parent(parent)
    _console(verbose)
    import torch

    torch.set_num_threads(threads)
    index = SweepIndex(sweep_dir)
    owner = Owner.current()
    with contextlib.suppress(KeyboardInterrupt):
        while (row := index.claim(owner)) is not None:
            run_claimed(index, row, owner)
