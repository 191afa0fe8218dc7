"""The submitit engine: a SLURM job array, one job per claimable point (``pip install sparsetime[slurm]``).

``slurm:`` in the sweep file holds the executor's parameters, passed to
``submitit.AutoExecutor.update_parameters`` (``timeout_min``, ``slurm_partition``,
``gpus_per_node``, ...), plus ``cluster``: ``slurm``, ``local`` (jobs as local processes, what the
tests use) or ``debug``; by default submitit picks SLURM where it is installed. At most
``--workers`` jobs run at once (``slurm_array_parallelism``; local jobs are started in waves).
Job files and logs go to ``<sweep>/submitit/``. Each job claims its point in the index itself.
"""
from __future__ import annotations

import logging
from typing import Any

from ..execute import engine_reason, run_point
from ..index import SweepIndex
from . import require, threads_per_worker

log = logging.getLogger(__name__)
LOCAL_TIMEOUT_MIN = 24 * 60  # submitit's local executor otherwise stops jobs after 2 minutes


def check(options: dict[str, Any]) -> None:
    """Before anything is written: submitit must be installed."""
    require("submitit", "slurm")


def run(index: SweepIndex, workers: int, options: dict[str, Any], verbose: bool) -> None:
    """Submit the claimable points as a job array and wait for every job."""
    submitit = require("submitit", "slurm")
    parameters = dict(options)
    cluster = parameters.pop("cluster", None)
    executor = submitit.AutoExecutor(folder=index.sweep_dir.resolve() / "submitit" / "%j", cluster=cluster)
    threads = int(parameters.get("cpus_per_task") or threads_per_worker(workers))
    defaults: dict[str, Any] = {"name": f"sparsetime-{index.sweep_dir.name}", "cpus_per_task": threads,
                                "slurm_array_parallelism": workers}
    if executor.cluster != "slurm":
        defaults["timeout_min"] = LOCAL_TIMEOUT_MIN
    try:
        executor.update_parameters(**{**defaults, **parameters})
    except (NameError, AssertionError, ValueError) as exc:  # submitit's ways of refusing a parameter
        raise ValueError(f"sweep file slurm: parameters refused by submitit: {' '.join(str(exc).split())}") from None
    sweep_dir = str(index.sweep_dir.resolve())
    names = [r["run_dir"] for r in index.rows() if index.claimable(r)]
    waves = [names] if executor.cluster == "slurm" else [names[i:i + workers] for i in range(0, len(names), workers)]
    log.info("submitit engine (%s): %d job(s), at most %d at once", executor.cluster, len(names), workers)
    for wave in waves:
        jobs = executor.map_array(run_point, [sweep_dir] * len(wave), wave, [threads] * len(wave))
        for job, name in zip(jobs, wave):
            try:
                job.result()
            except Exception as exc:  # noqa: BLE001 - the job died (its own errors are recorded)
                reason = engine_reason(f"submitit job {job.job_id} failed", exc)
                for failed in index.fail_orphans(reason, run_dir=name):
                    log.warning("point %s failed: %s", failed, reason)
