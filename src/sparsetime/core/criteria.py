"""Drop and growth criteria, each a small function registered by name (SPEC §4).

A criterion maps a :class:`LayerView` to a score tensor of the weight's shape. The one shared
update step (:meth:`sparsetime.core.sparsifier.DynamicSparsity.update_topology`) drops the active weights with the
*smallest* drop scores and grows the inactive positions with the *largest* growth scores, so a new
method is one function::

    @register_growth("my_growth")
    def my_growth(view: LayerView) -> torch.Tensor:
        return view.grad.abs() + 1e-3 * view.uniform()
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .index_sets import grow_unexplored, sample_absent


@dataclass
class LayerView:
    """What a criterion may read about one layer at update time (read-only by convention).

    For a layer executed sparse (``execution="sparse"``) a drop criterion sees only the active
    entries: ``weight`` is the 1-D values and ``mask``/``fired`` are all True; growth criteria
    without an index sampler need dense scores and so run masked only.
    """

    name: str
    weight: torch.Tensor
    mask: torch.Tensor
    fired: torch.Tensor
    generator: torch.Generator
    grad: torch.Tensor | None = None
    momentum: torch.Tensor | None = None

    def uniform(self) -> torch.Tensor:
        """Uniform [0, 1) noise of the weight's shape from the sparsifier's own generator."""
        return torch.rand(self.weight.shape, generator=self.generator).to(self.weight.device)


Criterion = Callable[[LayerView], torch.Tensor]
GROWTH: dict[str, Criterion] = {}
DROP: dict[str, Criterion] = {}
#: growth criteria that need the dense gradient of the update step / a running average of it
NEEDS_GRAD: set[str] = set()
NEEDS_MOMENTUM: set[str] = set()


def register_growth(name: str, needs: str | None = None) -> Callable[[Criterion], Criterion]:
    """Register a growth score (larger = grown first). ``needs``: None, "grad" or "momentum"."""
    def wrap(fn: Criterion) -> Criterion:
        GROWTH[name] = fn
        if needs == "grad":
            NEEDS_GRAD.add(name)
        elif needs == "momentum":
            NEEDS_MOMENTUM.add(name)
        return fn
    return wrap


#: growth criteria whose score is pure noise (plus a fixed preference) are also given as *index
#: samplers* ``(size, excluded, fired, k, generator) -> sorted flat indices``: they draw k
#: positions outside the sorted ``excluded`` set without scoring every position. The engine uses
#: the sampler when one exists, in both execution modes, so a masked and a sparse run draw the
#: same positions from the same generator state. ``fired()`` returns the sorted flat indices of
#: every position ever active (computed only when the sampler calls it).
IndexSampler = Callable[[int, torch.Tensor, Callable[[], torch.Tensor], int, torch.Generator], torch.Tensor]
GROWTH_SAMPLERS: dict[str, IndexSampler] = {}


def register_growth_sampler(name: str) -> Callable[[IndexSampler], IndexSampler]:
    """Register the index sampler of growth criterion ``name`` (see ``GROWTH_SAMPLERS``)."""
    def wrap(fn: IndexSampler) -> IndexSampler:
        GROWTH_SAMPLERS[name] = fn
        return fn
    return wrap


def register_drop(name: str) -> Callable[[Criterion], Criterion]:
    """Register a drop score (smaller = dropped first)."""
    def wrap(fn: Criterion) -> Criterion:
        DROP[name] = fn
        return fn
    return wrap


@register_growth("random")
def random_growth(view: LayerView) -> torch.Tensor:
    """SET: uniform among the candidates."""
    return view.uniform()


@register_growth_sampler("random")
def random_growth_sampler(size: int, excluded: torch.Tensor, fired: Callable[[], torch.Tensor], k: int,
                          generator: torch.Generator) -> torch.Tensor:
    """SET: a uniform k-subset of the candidates (same law as ranking uniform scores)."""
    return sample_absent(size, excluded, k, generator)


@register_growth_sampler("unexplored")
def unexplored_growth_sampler(size: int, excluded: torch.Tensor, fired: Callable[[], torch.Tensor], k: int,
                              generator: torch.Generator) -> torch.Tensor:
    """ITOP appendix F: uniform among never-activated positions first, then among the rest."""
    return grow_unexplored(size, excluded, fired(), k, generator)


@register_growth("gradient", needs="grad")
def gradient_growth(view: LayerView) -> torch.Tensor:
    """RigL: |dL/dw| of the dense gradient of the triggering step."""
    assert view.grad is not None
    return view.grad.abs()


@register_growth("momentum", needs="momentum")
def momentum_growth(view: LayerView) -> torch.Tensor:
    """SNFS: |EMA(0.9) of dense gradients|."""
    assert view.momentum is not None
    return view.momentum.abs()


@register_growth("unexplored")
def unexplored_growth(view: LayerView) -> torch.Tensor:
    """ITOP appendix F: never-activated positions first (random among them), then random."""
    return view.uniform() + (~view.fired).to(view.weight.dtype)


@register_drop("magnitude")
def magnitude_drop(view: LayerView) -> torch.Tensor:
    """Drop the active weights of smallest |w|."""
    return view.weight.abs()


@register_drop("negativity")
def negativity_drop(view: LayerView) -> torch.Tensor:
    """Drop the most negative active weights (keeps the largest signed values; cf. sparse_learning #19)."""
    return view.weight


@register_drop("random")
def random_drop(view: LayerView) -> torch.Tensor:
    """Drop uniformly at random among the active weights (an ablation)."""
    return view.uniform()


def get_growth(name: str) -> Criterion:
    if name not in GROWTH:
        raise ValueError(f"unknown growth {name!r}; allowed: {', '.join(GROWTH)}")
    return GROWTH[name]


def get_drop(name: str) -> Criterion:
    if name not in DROP:
        raise ValueError(f"unknown drop criterion {name!r}; allowed: {', '.join(DROP)}")
    return DROP[name]
