"""The Ray engine: every claimable point is one Ray task (``pip install sparsetime[ray]``).

Connects to the cluster at ``RAY_ADDRESS`` when it is set, else starts a local Ray instance with
this machine's cores (and stops it afterwards); a Ray session already initialised in this process
is used as it is. Each task claims its point in the index itself, so points running elsewhere are
skipped. ``ray:`` in the sweep file passes task options (``num_cpus``, ``num_gpus``, ``memory``,
...); locally a task asks for ``cores // workers`` CPUs and runs that many torch threads.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from ..execute import engine_reason, run_point
from ..index import SweepIndex
from . import available_cores, require, threads_per_worker

log = logging.getLogger(__name__)


def check(options: dict[str, Any]) -> None:
    """Before anything is written: Ray must be installed and accept the sweep file's task options."""
    ray = require("ray", "ray")
    try:
        ray.remote(run_point).options(**options)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sweep file ray: options refused by Ray: {' '.join(str(exc).split())}") from None


def run(index: SweepIndex, workers: int, options: dict[str, Any], verbose: bool) -> None:
    """Submit one task per claimable point and wait for all of them."""
    ray = require("ray", "ray")
    started = False
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:
            try:
                ray.init(address=address, log_to_driver=verbose)
            except ConnectionError as exc:
                raise ValueError(f"cannot connect to the Ray cluster at RAY_ADDRESS={address!r}: "
                                 f"{' '.join(str(exc).split())}; unset RAY_ADDRESS to start a local instance") from None
        else:
            ray.init(num_cpus=available_cores(), include_dashboard=False, log_to_driver=verbose)
        started = True
    try:
        threads = int(options.get("num_cpus") or threads_per_worker(workers))
        task = ray.remote(run_point).options(**{"num_cpus": threads, "max_retries": 0, **options})
        sweep_dir = str(index.sweep_dir.resolve())
        names = [r["run_dir"] for r in index.rows() if index.claimable(r)]
        refs = {task.remote(sweep_dir, name, threads): name for name in names}
        log.info("ray engine: %d task(s) of %d CPU(s) each", len(refs), threads)
        for ref, name in refs.items():
            try:
                ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - the task's process died (its own errors are recorded)
                reason = engine_reason("ray task failed", exc)
                for failed in index.fail_orphans(reason, run_dir=name):
                    log.warning("point %s failed: %s", failed, reason)
    finally:
        if started:
            ray.shutdown()
