"""The lottery-ticket experiment: every level a standard run directory under one experiment directory.

Level L is a ``sparsity.method=lth`` run named ``level_LL`` whose options point at level L-1's run
directory (``options.previous``); its masks come from pruning a fraction p of level L-1's surviving
weights. Levels are trained in order with :func:`sparsetime.train.train`, which skips finished runs
and resumes interrupted ones, so re-running an experiment continues where it stopped.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsetime.train import Config, config_hash, resolve_config, run_directory, train
from sparsetime.train.pruning_methods import LTH_DEFAULTS, lth_level_density, lth_levels_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LevelResult:
    """One finished level: its nominal and realised density, test accuracy and run directory."""

    level: int
    nominal_density: float
    density: float
    test_accuracy: float
    train_flops: float
    run_dir: Path
    already_finished: bool


@dataclass(frozen=True)
class LotteryResult:
    """The experiment directory and every level's result, level 0 first."""

    experiment_dir: Path
    levels: list[LevelResult]


def _base(config: Config) -> tuple[Config, dict[str, Any]]:
    """The experiment's config (method lth, options completed) and its options."""
    config = copy.deepcopy(config)
    config.sparsity.method = "lth"
    options = {**LTH_DEFAULTS, **config.sparsity.options}
    options.pop("level", None)
    options.pop("previous", None)
    config.sparsity.options = options
    config.sparsity.init_mask = None
    resolved = resolve_config(dataclasses.replace(config, name=config.name or "lth"))  # validates the options
    return resolved, dict(resolved.sparsity.options)


def lottery_directory(config: Config) -> Path:
    """``<output_dir>/<name>-<hash>`` of the experiment (name defaults to ``lth-<model>-<dataset>``)."""
    base, _ = _base(config)
    name = config.name or f"lth-{config.model}-{config.dataset}"
    return Path(config.output_dir) / f"{name}-{config_hash(base)}"


def _final_lr(config: Config) -> float:
    s, lr = config.schedule, config.optim.lr
    if s.name == "multistep":
        return lr * s.gamma ** len(s.milestones)
    if s.name == "cosine":
        if s.min_lr <= 0:
            raise ValueError("lth mode 'finetune' trains at the final learning rate, which is 0 with schedule.name="
                             "cosine and schedule.min_lr=0; allowed: schedule.min_lr > 0, or mode weights|lr")
        return s.min_lr
    return lr


def lottery_configs(config: Config) -> list[Config]:
    """Resolved configs of every level (validated; nothing is written).

    Levels: ``sparsity.options.levels`` if > 0, else the fewest with (1 - p)^L <= ``sparsity.density``.
    """
    base, options = _base(config)
    levels = options["levels"] or lth_levels_for(config.sparsity.density, options["fraction"])
    options["levels"] = levels
    parent = lottery_directory(config)
    configs: list[Config] = []
    previous: str | None = None
    for level in range(levels + 1):
        c = copy.deepcopy(config)
        c.name, c.output_dir = f"level_{level:02d}", str(parent)
        c.sparsity.method, c.sparsity.init_mask = "lth", None
        c.sparsity.density = lth_level_density(level, options["fraction"])
        c.sparsity.options = {**options, "level": level, "previous": previous}
        if level > 0 and options["mode"] == "finetune":
            c.optim.lr, c.schedule.name = _final_lr(config), "none"
        resolved = resolve_config(c)
        configs.append(resolved)
        previous = str(run_directory(resolved))
    return configs


def run_lottery(config: Config) -> LotteryResult:
    """Train every level not yet finished, in order; returns all levels' results."""
    configs = lottery_configs(config)
    parent = lottery_directory(config)
    created = not parent.exists()
    results: list[LevelResult] = []
    try:
        for level, c in enumerate(configs):
            result = train(c)
            s = result.summary
            results.append(LevelResult(level, c.sparsity.density, float(s["density"]), float(s["test_accuracy"]),
                                       float(s["train_flops"]), result.run_dir, result.already_finished))
            log.info("lottery level %d/%d: density %.4f, test accuracy %.2f%%%s", level, len(configs) - 1,
                     s["density"], 100 * s["test_accuracy"], " (already finished)" if result.already_finished else "")
    except ValueError:
        if created and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()  # bad input found before any level started: leave nothing behind
        raise
    return LotteryResult(parent, results)


def format_table(result: LotteryResult) -> str:
    """Plain-text table: level, nominal and realised density, test accuracy, run directory."""
    rows = [f"{'level':>5} {'density':>9} {'realised':>9} {'test acc':>9}  run directory"]
    for r in result.levels:
        rows.append(f"{r.level:>5} {r.nominal_density:>9.4f} {r.density:>9.4f} {100 * r.test_accuracy:>8.2f}%  "
                    f"{r.run_dir}")
    return "\n".join(rows)
