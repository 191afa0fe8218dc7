"""The index's claims: a live claimer keeps its point; a dead one (this host: gone from the process table;
another host: heartbeat too old) loses it; finished points are never claimed."""
from __future__ import annotations

import os
import subprocess
import time

from sweep_helpers import write_sweep

from sparsetime.experiments import SweepIndex, expand_points, load_sweep
from sparsetime.experiments.owner import Owner, process_alive, process_start


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def synced(tmp_path, stale_after: float = 120.0) -> tuple[SweepIndex, list[str]]:
    points = expand_points(load_sweep(write_sweep(tmp_path, grid={"sparsity.density": [0.2, 0.3]})))
    index = SweepIndex(tmp_path / "out" / "s", stale_after=stale_after)
    index.sync(points)
    return index, [p.run_dir.name for p in points]


def test_process_liveness_checks_the_start_time_and_zombies():
    me = os.getpid()
    assert process_alive(me, process_start(me))
    assert not process_alive(me, "1")  # same id, another start time: a reused process id
    assert not process_alive(dead_pid())
    zombie = subprocess.Popen(["true"])
    os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)  # wait until it exits, but leave it unreaped
    assert not process_alive(zombie.pid)
    zombie.wait()


def test_claims_of_live_processes_hold_and_dead_ones_are_taken_over(tmp_path):
    index, names = synced(tmp_path)
    me = Owner.current()
    first = index.claim(me)
    assert first["run_dir"] == names[0] and first["attempts"] == 1
    assert index.claim(me, names[0]) is None  # running under a live owner
    ghost = Owner(me.host, dead_pid())
    second = index.claim(ghost)
    assert second["run_dir"] == names[1]
    assert index.count_claimable() == 1  # the dead owner's point
    retaken = index.claim(me)
    assert retaken["run_dir"] == names[1] and retaken["attempts"] == 2
    index.finish(names[1], {"test_accuracy": 0.5, "itop_rate": 0.25})
    assert index.claim(me, names[1]) is None and index.count_claimable() == 0
    row = {r["run_dir"]: r for r in index.rows()}[names[1]]
    assert row["status"] == "finished" and row["test_accuracy"] == 0.5 and row["itop_rate"] == 0.25


def test_claims_from_another_host_expire_with_their_heartbeat(tmp_path):
    index, names = synced(tmp_path, stale_after=1.5)
    remote = Owner("another-host", 1)
    assert index.claim(remote)["run_dir"] == names[0]
    assert index.claim(remote)["run_dir"] == names[1]
    assert index.count_claimable() == 0  # fresh heartbeats
    time.sleep(1.6)
    index.heartbeat(names[1], remote)  # one claimer still beats
    assert [r["run_dir"] for r in index.rows() if index.claimable(r)] == [names[0]]


def test_failure_and_release_only_touch_the_owners_claim(tmp_path):
    index, names = synced(tmp_path)
    me, other = Owner.current(), Owner("another-host", 7)
    index.claim(me)
    index.fail(names[0], other, "not mine")
    assert index.rows()[0]["status"] == "running"
    index.fail(names[0], me, "ValueError: bad")
    assert (index.rows()[0]["status"], index.rows()[0]["error"]) == ("failed", "ValueError: bad")
    index.claim(me)
    index.release(names[1], me)
    assert index.rows()[1]["status"] == "pending" and index.rows()[1]["attempts"] == 1
