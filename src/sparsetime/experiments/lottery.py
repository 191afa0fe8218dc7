"""The lottery-ticket experiment: every level a standard run directory under one experiment directory.

Level L is a ``sparsity.method=lth`` run named ``level_LL`` whose options point at level L-1's run
directory (``options.previous``); its masks come from pruning a fraction p of level L-1's surviving
weights (see :mod:`sparsetime.train.lottery_level`). Levels are trained in order with
:func:`sparsetime.train.train`, which skips finished runs and resumes interrupted ones, so
re-running an experiment continues where it stopped. Fine-tuning levels train at the final
learning rate of the schedule, with no warm-up.

``sparsity.options.controls`` (``reinit``, ``random_mask``) adds, for every level L >= 1, a control
run ``level_LL_<control>`` next to it, trained right after it: the ticket's mask on freshly drawn
weights, or a random mask with the ticket's per-layer counts on the step-k weights, both retrained
from step k on the experiment's schedule. Controls change neither the experiment directory nor the
levels' run directories, so they can be added to a finished experiment.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsetime.pruning import lth_density, lth_levels
from sparsetime.train import Config, config_hash, resolve_config, run_directory, train
from sparsetime.train.lottery_level import CONTROLS, LTH_DEFAULTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LevelResult:
    """One finished level (or control run): its nominal and realised density, test accuracy and run directory."""

    level: int
    nominal_density: float
    density: float
    test_accuracy: float
    train_flops: float
    run_dir: Path
    already_finished: bool
    control: str | None = None


@dataclass(frozen=True)
class LotteryResult:
    """The experiment directory and every level's result, level 0 first, then the control runs."""

    experiment_dir: Path
    levels: list[LevelResult]
    controls: list[LevelResult] = field(default_factory=list)


def _controls(options: dict[str, Any]) -> list[str]:
    """Pop and check ``controls`` (a list of CONTROLS, or one of them) from the experiment's options."""
    if "control" in options:
        raise ValueError("sparsity.options.control names the control of one level; an experiment takes "
                         f"sparsity.options.controls, a list of {', '.join(CONTROLS)}")
    value = options.pop("controls", None) or []
    controls = [value] if isinstance(value, str) else value
    if not isinstance(controls, list) or any(c not in CONTROLS for c in controls) or len(set(controls)) < len(controls):
        raise ValueError(f"sparsity.options.controls = {value!r} is invalid; allowed: a list of distinct values "
                         f"from {', '.join(CONTROLS)}")
    return list(controls)


def _base(config: Config) -> tuple[Config, dict[str, Any], list[str]]:
    """The experiment's config (method lth, options completed), its options and its controls."""
    config = copy.deepcopy(config)
    config.sparsity.method = "lth"
    options = {**LTH_DEFAULTS, **config.sparsity.options}
    options.pop("level", None)
    options.pop("previous", None)
    controls = _controls(options)
    config.sparsity.options = options
    config.sparsity.init_mask = None
    resolved = resolve_config(dataclasses.replace(config, name=config.name or "lth"))  # validates the options
    return resolved, dict(resolved.sparsity.options), controls


def lottery_directory(config: Config) -> Path:
    """``<output_dir>/<name>-<hash>`` of the experiment (name defaults to ``lth-<model>-<dataset>``)."""
    base, _, _ = _base(config)
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


def _level_config(config: Config, parent: Path, level: int, options: dict[str, Any], previous: str | None,
                  control: str | None = None) -> Config:
    c = copy.deepcopy(config)
    c.name = f"level_{level:02d}" + (f"_{control}" if control else "")
    c.output_dir = str(parent)
    c.sparsity.method, c.sparsity.init_mask = "lth", None
    c.sparsity.density = lth_density(level, options["fraction"])
    c.sparsity.options = {**options, "level": level, "previous": previous, **({"control": control} if control else {})}
    if level > 0 and options["mode"] == "finetune" and control is None:  # the final rate from the first step
        c.optim.lr, c.schedule.name, c.schedule.warmup_epochs = _final_lr(config), "none", 0.0
    return resolve_config(c)


def _experiment(config: Config) -> tuple[list[Config], list[tuple[int, Config]]]:
    """Resolved configs of every level, and (level, config) of every control run."""
    _, options, controls = _base(config)
    levels = options["levels"] or lth_levels(config.sparsity.density, options["fraction"])
    options["levels"] = levels
    parent = lottery_directory(config)
    configs: list[Config] = []
    control_configs: list[tuple[int, Config]] = []
    previous: str | None = None
    for level in range(levels + 1):
        if level > 0:
            control_configs += [(level, _level_config(config, parent, level, options, previous, kind))
                                for kind in controls]
        resolved = _level_config(config, parent, level, options, previous)
        configs.append(resolved)
        previous = str(run_directory(resolved))
    return configs, control_configs


def lottery_configs(config: Config) -> list[Config]:
    """Resolved configs of every level (validated; nothing is written).

    Levels: ``sparsity.options.levels`` if > 0, else the fewest with (1 - p)^L <= ``sparsity.density``.
    """
    return _experiment(config)[0]


def _train(c: Config, level: int, control: str | None) -> LevelResult:
    result = train(c)
    s = result.summary
    log.info("lottery level %d%s: density %.4f, test accuracy %.2f%%%s", level, f" ({control} control)" if control
             else "", s["density"], 100 * s["test_accuracy"], " (already finished)" if result.already_finished else "")
    return LevelResult(level, c.sparsity.density, float(s["density"]), float(s["test_accuracy"]),
                       float(s["train_flops"]), result.run_dir, result.already_finished, control)


def run_lottery(config: Config) -> LotteryResult:
    """Train every level (and control run) not yet finished, in order; returns all their results."""
    configs, control_configs = _experiment(config)
    parent = lottery_directory(config)
    created = not parent.exists()
    results: list[LevelResult] = []
    controls: list[LevelResult] = []
    try:
        for level, c in enumerate(configs):
            results.append(_train(c, level, None))
            controls += [_train(cc, level, cc.sparsity.options["control"]) for lv, cc in control_configs if lv == level]
    except ValueError:
        if created and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()  # bad input found before any level started: leave nothing behind
        raise
    return LotteryResult(parent, results, controls)


def format_table(result: LotteryResult) -> str:
    """Plain-text table: level, nominal and realised density, test accuracy, run directory; then the controls."""
    rows = [f"{'level':>5} {'density':>9} {'realised':>9} {'test acc':>9}  run directory"]
    for r in result.levels:
        rows.append(f"{r.level:>5} {r.nominal_density:>9.4f} {r.density:>9.4f} {100 * r.test_accuracy:>8.2f}%  "
                    f"{r.run_dir}")
    if result.controls:
        rows.append(f"{'control':>11} {'level':>5} {'density':>9} {'realised':>9} {'test acc':>9}  run directory")
        for r in result.controls:
            rows.append(f"{r.control:>11} {r.level:>5} {r.nominal_density:>9.4f} {r.density:>9.4f} "
                        f"{100 * r.test_accuracy:>8.2f}%  {r.run_dir}")
    return "\n".join(rows)
