"""Learned supermasks as a runner method (``sparsity.method=supermask``): a mask trained on frozen weights.

Every weight of the masked set gets a score (:class:`sparsetime.pruning.supermask.ScoredMask`,
registered as a parametrization of the layer's ``weight``); only the scores train, added to the
run's optimiser as their own parameter group, while every parameter of the model is frozen at
its random initialisation (its value never changes). ``sparsity.options.algorithm``: ``edge_popup``
(default, Ramanujan et al. 2020) or ``bernoulli`` (Zhou et al. 2019); each layer keeps
``sparsity.density`` of its weights. ``sparsity.options.weights`` draws the frozen weights:
``signed_constant`` (default, +-sqrt(2 / (density fan_in))), ``kaiming_normal`` (that std) or
``model`` (the model's own init, under which the scores barely train: see
:func:`sparsetime.pruning.supermask.supermask_weights`). Biases and other parameters stay as
initialised, frozen. Scores live in the model's state, so checkpoints and resume
need nothing else. Training FLOPs per example and step: 2 f_S + f_D (the scores' gradient needs
the dense weight gradient).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from sparsetime.core.report import masks_report
from sparsetime.core.selection import select_sparse_parameters
from sparsetime.pruning.supermask import ALGORITHMS, WEIGHT_INITS, ScoredMask, supermask_weights

from .config import SparsityConfig
from .context import SparsifierContext
from .init_masks import Masks, selection
from .method_checks import check_choice, check_options
from .methods import register_method

SUPERMASK_DEFAULTS = {"algorithm": "edge_popup", "weights": "signed_constant"}


class SupermaskTraining:
    """The Sparsifier of a supermask run: scored masks on frozen weights, one per masked layer."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, names: list[str], density: float,
                 algorithm: str, seed: int, weights: str = "signed_constant") -> None:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + 31)
        weight_generator = torch.Generator().manual_seed(seed * 1_000_003 + 37)
        for p in model.parameters():
            p.requires_grad_(False)
        modules = dict(model.named_modules())
        self.scored: dict[str, ScoredMask] = {}
        for name in names:
            module = modules[name.rpartition(".")[0]]
            with torch.no_grad():
                module.weight.copy_(supermask_weights(module.weight, density, weights, weight_generator))
            scored = ScoredMask(module.weight, density, algorithm, generator)
            parametrize.register_parametrization(module, "weight", scored)
            self.scored[name] = scored
        optimizer.add_param_group({"params": [s.scores for s in self.scored.values()]})
        self.steps = 0

    @property
    def masks(self) -> Masks:
        """The evaluation masks now (top-k of the scores per layer)."""
        return {n: s.hard_mask() for n, s in self.scored.items()}

    @property
    def update_history(self) -> None:
        """The mask changes every step; no topology-update records."""
        return None

    def step(self) -> None:
        """Count the step (the optimiser updates the scores; the weights stay frozen)."""
        self.steps += 1

    def current_densities(self) -> dict[str, float]:
        """{weight name: density of the evaluation mask}."""
        return {n: float(m.sum()) / m.numel() for n, m in self.masks.items()}

    def density(self) -> float:
        """Active weights over all masked weights."""
        masks = self.masks
        return sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())

    def layer_report(self) -> list[dict[str, Any]]:
        """Per layer: the evaluation mask's counts (no exploration tracked)."""
        return masks_report(self.masks)

    def exploration_rate(self) -> None:
        """Not tracked."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """The step count (scores are parameters of the model, saved with it)."""
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the step count."""
        self.steps = int(state["steps"])


def _build(ctx: SparsifierContext) -> SupermaskTraining:
    s = ctx.sparsity
    names = list(select_sparse_parameters(ctx.model, **selection(s)))
    options = {**SUPERMASK_DEFAULTS, **s.options}
    return SupermaskTraining(ctx.model, ctx.optimizer, names, s.density, options["algorithm"], ctx.seed,
                             options["weights"])


def _check(s: SparsityConfig) -> None:
    check_options("supermask", s.options, set(SUPERMASK_DEFAULTS))
    options = {**SUPERMASK_DEFAULTS, **s.options}
    check_choice("sparsity.options.algorithm", options["algorithm"], ALGORITHMS)
    check_choice("sparsity.options.weights", options["weights"], WEIGHT_INITS)


register_method("supermask", _build, fixed={"update_interval": None}, check=_check,
                step_flops=lambda f_s, f_d, dt: 2.0 * f_s + f_d,
                description="a mask learned on frozen random weights (edge-popup or Bernoulli supermask)")
