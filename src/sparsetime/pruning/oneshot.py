"""One entry point for every pruning score, and one-shot pruning built on it.

``scores(model, method, batches=None, **options)`` dispatches to the score functions of this
package; ``prune(...)`` turns scores into masks at a density. Options are checked against the
chosen method's keyword arguments, so a misspelt option is a ValueError, not silently ignored.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ._common import Batch, Masks, check_density, check_scope, make_generator
from .grasp import grasp_scores
from .masking import masks_from_scores
from .saliency import magnitude_scores, random_scores, snip_scores
from .synflow import synflow_scores

SCORE_FUNCTIONS: dict[str, Callable[..., Masks]] = {
    "random": random_scores,
    "magnitude": magnitude_scores,
    "snip": snip_scores,
    "grasp": grasp_scores,
    "synflow": synflow_scores,
}


def score_options(method: str) -> list[str]:
    """The keyword options ``method`` accepts."""
    fn = _function(method)
    return [n for n, p in inspect.signature(fn).parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]


def _function(method: str) -> Callable[..., Masks]:
    if method not in SCORE_FUNCTIONS:
        raise ValueError(f"unknown pruning method {method!r}; allowed: {sorted(SCORE_FUNCTIONS)}")
    return SCORE_FUNCTIONS[method]


def scores(model: nn.Module, method: str, batches: Iterable[Batch] | None = None, **options: Any) -> Masks:
    """{parameter name: score tensor} over the masked set; higher score means keep.

    ``method`` is one of random, magnitude, snip, grasp, synflow. ``batches`` is an iterable of
    (inputs, targets) (needed by snip and grasp; synflow reads only the input shape). The model's
    weights, buffers and gradients are left untouched.
    """
    fn = _function(method)
    allowed = score_options(method)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for method {method!r}; allowed: {allowed}")
    return fn(model, batches, **options)


def prune(model: nn.Module, method: str, density: float, batches: Iterable[Batch] | None = None,
          scope: str = "global", generator: torch.Generator | None = None, seed: int | None = None,
          allow_collapse: bool = False, **options: Any) -> Masks:
    """One-shot pruning: masks keeping exactly ``round(density * N)`` weights by ``method``'s scores.

    Works at initialisation (SNIP, GraSP, SynFlow, random, magnitude) or on a trained model
    (magnitude). SynFlow receives ``density``, ``scope`` and the generator for its rounds. The model
    is not modified; apply the result with :func:`apply_masks` or seed a DST run with it.
    """
    density = check_density(density)
    check_scope(scope)
    gen = make_generator(generator, seed)
    if method == "synflow":
        options = {"density": density, "scope": scope, "generator": gen, **options}
    elif method == "random" and "generator" not in options and "seed" not in options:
        options = {"generator": gen, **options}
    s = scores(model, method, batches, **options)
    return masks_from_scores(s, density, scope=scope, generator=gen, allow_collapse=allow_collapse)


def magnitude_prune(model: nn.Module, density: float, scope: str = "global",
                    generator: torch.Generator | None = None, allow_collapse: bool = False,
                    dense_layers: Sequence[str] | None = None, dense_first: bool = False,
                    dense_last: bool = False, extra_layers: Sequence[str] | None = None) -> Masks:
    """One-shot magnitude pruning: keep the ``round(density * N)`` largest |w| (global or per layer)."""
    return prune(model, "magnitude", density, scope=scope, generator=generator, allow_collapse=allow_collapse,
                 dense_layers=dense_layers, dense_first=dense_first, dense_last=dense_last,
                 extra_layers=extra_layers)
