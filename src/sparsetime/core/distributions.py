"""Per-layer densities: uniform, ER, ERK and custom.

All distributions solve for exact per-layer densities ``d_l`` whose weighted sum meets the global
target over the masked set; ER/ERK cap densities at 1 by iteratively marking the layers with the
largest raw score dense (the cap that sparse_learning #20 lacks).
"""
from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence

from torch import nn

DISTRIBUTIONS = ("uniform", "er", "erk")
Shape = tuple[int, ...]


def check_density(density: float, what: str = "density") -> float:
    """Validate a density in (0, 1]."""
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not (0.0 < float(density) <= 1.0):
        raise ValueError(f"{what} must be a number in (0, 1] (1 - sparsity), got {density!r}")
    return float(density)


def raw_score(shape: Shape, distribution: str, power: float = 1.0) -> float:
    """Unnormalised density score p_l of a weight of ``shape`` (out, in, k_1, ..., k_n)."""
    if distribution == "er":
        n_out, n_in = shape[0], (shape[1] if len(shape) > 1 else 1)
        return (n_in + n_out) / (n_in * n_out)
    if distribution == "erk":
        return (sum(shape) / math.prod(shape)) ** power
    raise ValueError(f"unknown distribution {distribution!r}; allowed: {', '.join(DISTRIBUTIONS)} or a mapping")


def active_count(density: float, size: int) -> int:
    """Exact number of active weights: round half up of density * size, so that the counts
    over all layers stay within one weight per layer of density * total."""
    return min(size, int(math.floor(density * size + 0.5)))


def compute_densities(
    shapes: Mapping[str, Shape],
    density: float,
    distribution: str | Mapping[str, float] = "erk",
    erk_power: float = 1.0,
) -> dict[str, float]:
    """Per-layer densities for layers of the given shapes so that sum d_l N_l = d sum N_l."""
    density = check_density(density)
    if not shapes:
        raise ValueError("no layers to distribute a density over")
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    total = sum(sizes.values())
    if isinstance(distribution, Mapping):
        return _custom(shapes, sizes, total, density, distribution)
    if not isinstance(distribution, str) or distribution.lower() not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}; allowed: {', '.join(DISTRIBUTIONS)} "
                         "or a mapping {name pattern: density}")
    distribution = distribution.lower()
    if distribution == "uniform":
        return {n: density for n in shapes}
    scores = {n: raw_score(s, distribution, erk_power) for n, s in shapes.items()}
    dense: set[str] = set()
    while True:
        budget = density * total - sum(sizes[n] for n in dense)
        free = [n for n in shapes if n not in dense]
        if not free:
            break
        divisor = sum(scores[n] * sizes[n] for n in free)
        eps = budget / divisor
        top = max(scores[n] for n in free)
        if eps * top > 1.0 + 1e-12:
            dense.update(n for n in free if scores[n] == top)
            continue
        break
    if budget < -1e-9 * total:  # pragma: no cover - cannot happen for d <= 1, kept as a guard
        raise ValueError(f"density {density} cannot be met by {distribution} after capping layers at 1")
    return {n: (1.0 if n in dense else min(1.0, eps * scores[n])) for n in shapes}


def _custom(shapes: Mapping[str, Shape], sizes: Mapping[str, int], total: int, density: float,
            mapping: Mapping[str, float]) -> dict[str, float]:
    fixed: dict[str, float] = {}
    for pattern, value in mapping.items():
        value = check_density(value, f"density for pattern {pattern!r}")
        hits = [n for n in shapes if fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(n.rsplit(".", 1)[0], pattern)]
        if not hits:
            raise ValueError(f"custom distribution pattern {pattern!r} matches no sparse layer; layers: {', '.join(shapes)}")
        for n in hits:
            fixed.setdefault(n, value)
    rest = [n for n in shapes if n not in fixed]
    if not rest:
        return dict(fixed)
    remaining = density * total - sum(fixed[n] * sizes[n] for n in fixed)
    rest_size = sum(sizes[n] for n in rest)
    d_rest = remaining / rest_size
    if not (0.0 < d_rest <= 1.0 + 1e-12):
        raise ValueError(
            f"custom densities leave density {d_rest:.4g} for the other layers ({', '.join(rest)}); "
            f"it must be in (0, 1]: change density={density} or the mapping"
        )
    out = dict(fixed)
    out.update({n: min(1.0, d_rest) for n in rest})
    return {n: out[n] for n in shapes}


def layer_densities(
    model: nn.Module,
    density: float,
    distribution: str | Mapping[str, float] = "erk",
    dense_layers: Sequence[str] | None = None,
    dense_first: bool = False,
    dense_last: bool = False,
    extra_layers: Sequence[str] | None = None,
    erk_power: float = 1.0,
) -> dict[str, float]:
    """Per-layer densities of ``model``'s masked set, without building masks (public contract)."""
    from .selection import select_sparse_parameters

    params = select_sparse_parameters(model, dense_layers, dense_first, dense_last, extra_layers)
    return compute_densities({n: tuple(p.shape) for n, p in params.items()}, density, distribution, erk_power)
