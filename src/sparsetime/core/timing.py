"""When topology updates happen and how many weights they replace.

Updates happen at steps t with t % ΔT == 0 and start < t <= T * stop_fraction (no end without a
total step count); the drop fraction at t follows a registered schedule
(:mod:`sparsetime.core.schedules`) from alpha down to f_min at the end step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from . import schedules


@dataclass(frozen=True)
class UpdateSchedule:
    """Update steps and drop fractions of one run (``interval`` None: static sparse training)."""

    interval: int | None
    total_steps: int | None
    start_step: int = 0
    stop_fraction: float = 1.0
    drop_fraction: float = 0.5
    min_drop_fraction: float = 0.0
    drop_schedule: str = "cosine"

    @property
    def end_step(self) -> float | None:
        """T * stop_fraction, the last step that may update (None without ``total_steps``)."""
        return None if self.total_steps is None else self.total_steps * self.stop_fraction

    def is_update_step(self, step: int) -> bool:
        """Whether the topology is updated after optimizer step ``step``."""
        if self.interval is None or step % self.interval != 0 or step <= self.start_step:
            return False
        end = self.end_step
        return end is None or step <= end

    def next_update_step(self, step: int) -> int | None:
        """The first update step >= ``step`` (None when no update is left)."""
        if self.interval is None:
            return None
        first = max(step, self.start_step + 1)
        candidate = math.ceil(first / self.interval) * self.interval
        end = self.end_step
        return None if end is not None and candidate > end else candidate

    def drop_fraction_at(self, step: int) -> float:
        """f(t) of the configured schedule."""
        end = self.end_step
        return schedules.get_schedule(self.drop_schedule)(step, self.drop_fraction, self.min_drop_fraction,
                                                          end if end else 1.0)
