"""Drop-fraction schedules f(t), registered by name: constant alpha, cosine decay from alpha to
f_min at the end step (RigL: f_min = 0; ITOP: 0.005), linear decay."""
from __future__ import annotations

import math
from collections.abc import Callable

Schedule = Callable[[int, float, float, float], float]
SCHEDULES: dict[str, Schedule] = {}


def register_schedule(name: str) -> Callable[[Schedule], Schedule]:
    """Register ``fn(step, alpha, min_fraction, end_step) -> fraction`` under ``name``."""
    def wrap(fn: Schedule) -> Schedule:
        SCHEDULES[name] = fn
        return fn
    return wrap


@register_schedule("constant")
def constant(step: int, alpha: float, min_fraction: float, end_step: float) -> float:
    return alpha


@register_schedule("cosine")
def cosine(step: int, alpha: float, min_fraction: float, end_step: float) -> float:
    """f(t) = f_min + (alpha - f_min)/2 * (1 + cos(pi t / t_end))."""
    t = min(step, end_step) / end_step
    return min_fraction + 0.5 * (alpha - min_fraction) * (1.0 + math.cos(math.pi * t))


@register_schedule("linear")
def linear(step: int, alpha: float, min_fraction: float, end_step: float) -> float:
    """Linear decay from alpha at t = 0 to f_min at t_end."""
    t = min(step, end_step) / end_step
    return alpha + (min_fraction - alpha) * t


def get_schedule(name: str) -> Schedule:
    if name not in SCHEDULES:
        raise ValueError(f"unknown drop_schedule {name!r}; allowed: {', '.join(SCHEDULES)}")
    return SCHEDULES[name]
