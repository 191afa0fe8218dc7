"""Who runs a point: host, process id and process start time, and whether that process still lives.

A point claimed by a process that died (killed, crashed, its machine rebooted) must be claimable
again. On the claimer's own host the process table answers directly (the start time guards against
a reused process id, and a zombie counts as dead); for a process on another host only its
heartbeat can tell, so a claim whose heartbeat is older than ``stale_after`` seconds is released.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

HEARTBEAT_SECONDS = 10.0
STALE_AFTER_SECONDS = 120.0


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks) from ``/proc/<pid>/stat``; None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    return (fields[0], fields[19]) if len(fields) > 19 else None


def process_start(pid: int) -> str:
    """A token that differs between two processes that had the same id ('' where it cannot be read)."""
    stat = _proc_stat(pid)
    return stat[1] if stat else ""


def process_alive(pid: int, start: str = "") -> bool:
    """Whether process ``pid`` (started at ``start``, if known) is running on this host."""
    stat = _proc_stat(pid)
    if stat is not None:
        state, started = stat
        return state not in ("Z", "X") and (not start or started == start)
    if os.path.isdir("/proc/self"):  # a process table exists and this pid is not in it
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Owner:
    """A process that may hold claims."""

    host: str
    pid: int
    start: str = ""

    @classmethod
    def current(cls) -> Owner:
        """This process."""
        pid = os.getpid()
        return cls(socket.gethostname(), pid, process_start(pid))

    def alive(self, heartbeat: float | None, stale_after: float = STALE_AFTER_SECONDS) -> bool:
        """Whether the owner can still be running its point."""
        if self.host == socket.gethostname():
            return process_alive(self.pid, self.start)
        return heartbeat is not None and time.time() - heartbeat < stale_after

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"
