"""Drop and growth criteria: one registered record per name, used by the one update step.

The update step (:func:`sparsetime.core.update.update_topology`) drops, in every layer, the k
active weights with the *smallest* drop score and grows k strictly inactive positions chosen by
the growth criterion. A criterion is a small record saying how it chooses and what it needs:

* :class:`GrowthCriterion` -- any of: ``sampler`` (draws k positions outside an excluded set
  without scoring every position: random, unexplored), ``grad_score`` (an elementwise function of
  the dense gradient, so a layer stored sparse can evaluate it block by block: RigL's ``abs``),
  ``score`` (a dense score tensor over all positions, from a :class:`LayerView`; layers stored
  masked only). ``needs`` is None, "grad" or "momentum" (what the engine must keep for it).
* :class:`DropCriterion` -- ``score`` (smaller = dropped first) or ``select`` (picks the k
  entries itself, e.g. SET's two-sided negativity rule), both over the active entries only.

A new method is one function::

    @register_growth("my_growth", needs="grad")
    def my_growth(view: LayerView) -> torch.Tensor:
        return view.grad.abs() + 1e-3 * view.uniform()
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .index_sets import grow_unexplored, sample_absent
from .topk import select_topk

NEEDS = (None, "grad", "momentum")


@dataclass
class LayerView:
    """What a criterion may read about one layer at update time (read-only by convention).

    Growth scores see the dense layer: ``weight``, ``mask``, ``fired`` (every position ever
    active), ``grad`` / ``momentum`` when the criterion needs them. Drop criteria see the active
    entries only, in both execution modes: ``weight`` (and ``grad`` when the layer has one) are
    1-D and aligned with the sorted active positions, ``mask`` and ``fired`` are all True.
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


Score = Callable[[LayerView], torch.Tensor]
#: ``(size, excluded, fired, k, generator) -> sorted flat indices``: k positions of [0, size) outside
#: the sorted ``excluded`` set; ``fired()`` gives the sorted positions ever active (computed on demand)
IndexSampler = Callable[[int, torch.Tensor, Callable[[], torch.Tensor], int, torch.Generator], torch.Tensor]
#: ``(view over active entries, k, generator) -> sorted positions into the active entries to drop``
DropSelect = Callable[[LayerView, int, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class GrowthCriterion:
    """How a growth criterion picks positions, and what the engine must keep for it."""

    name: str
    score: Score | None = None
    sampler: IndexSampler | None = None
    grad_score: Callable[[torch.Tensor], torch.Tensor] | None = None
    needs: str | None = None

    @property
    def runs_sparse(self) -> bool:
        """Whether a layer stored sparse (no dense weight or gradient) can use this criterion."""
        return self.sampler is not None or self.grad_score is not None

    def dense_scores(self, view: LayerView) -> torch.Tensor:
        """Scores over every position of a dense layer (larger = grown first)."""
        if self.score is not None:
            return self.score(view)
        if self.grad_score is not None:
            return self.grad_score(view.grad)
        return view.uniform()  # sampler-only criteria never ask; a safe default regardless


@dataclass(frozen=True)
class DropCriterion:
    """How a drop criterion picks the k active entries to remove."""

    name: str
    score: Score | None = None
    select: DropSelect | None = None

    def choose(self, view: LayerView, k: int, generator: torch.Generator) -> torch.Tensor:
        """Sorted positions (into the active entries) of the k weights to drop."""
        if self.select is not None:
            return self.select(view, k, generator)
        return select_topk(self.score(view).reshape(-1), k, generator, largest=False)


GROWTH: dict[str, GrowthCriterion] = {}
DROP: dict[str, DropCriterion] = {}


def _check_needs(needs: str | None) -> None:
    if needs not in NEEDS:
        raise ValueError(f"needs must be one of None, 'grad', 'momentum'; got {needs!r}")


def register_growth_criterion(criterion: GrowthCriterion) -> GrowthCriterion:
    """Register (or replace) a growth record under its name."""
    _check_needs(criterion.needs)
    if criterion.score is None and criterion.sampler is None and criterion.grad_score is None:
        raise ValueError(f"growth criterion {criterion.name!r} needs a score, a sampler or a grad_score")
    GROWTH[criterion.name] = criterion
    return criterion


def register_growth(name: str, needs: str | None = None) -> Callable[[Score], Score]:
    """Decorator: register a dense growth score (larger = grown first); replaces a record of that name.

    ``needs``: None, "grad" (the dense gradient of the update step) or "momentum" (an EMA of dense
    gradients). A dense score runs on layers stored masked; see :class:`GrowthCriterion` for
    criteria that also run on layers stored sparse.
    """
    def wrap(fn: Score) -> Score:
        register_growth_criterion(GrowthCriterion(name, score=fn, needs=needs))
        return fn
    return wrap


def register_growth_sampler(name: str) -> Callable[[IndexSampler], IndexSampler]:
    """Decorator: give growth criterion ``name`` an index sampler (used in both execution modes)."""
    def wrap(fn: IndexSampler) -> IndexSampler:
        base = GROWTH.get(name, GrowthCriterion(name))
        register_growth_criterion(dataclasses.replace(base, sampler=fn))
        return fn
    return wrap


def register_drop(name: str) -> Callable[[Score], Score]:
    """Decorator: register a drop score over the active entries (smaller = dropped first)."""
    def wrap(fn: Score) -> Score:
        DROP[name] = DropCriterion(name, score=fn)
        return fn
    return wrap


def register_drop_selector(name: str) -> Callable[[DropSelect], DropSelect]:
    """Decorator: register a drop rule that chooses its k entries itself (exact counts required)."""
    def wrap(fn: DropSelect) -> DropSelect:
        DROP[name] = DropCriterion(name, select=fn)
        return fn
    return wrap


def get_growth(name: str) -> GrowthCriterion:
    """The growth record ``name``; ValueError listing the registered ones otherwise."""
    if name not in GROWTH:
        raise ValueError(f"unknown growth {name!r}; allowed: {', '.join(GROWTH)}")
    return GROWTH[name]


def get_drop(name: str) -> DropCriterion:
    """The drop record ``name``; ValueError listing the registered ones otherwise."""
    if name not in DROP:
        raise ValueError(f"unknown drop criterion {name!r}; allowed: {', '.join(DROP)}")
    return DROP[name]


# ----------------------------------------------------------------------------- growth

def _random_sampler(size: int, excluded: torch.Tensor, fired: Callable[[], torch.Tensor], k: int,
                    generator: torch.Generator) -> torch.Tensor:
    """SET: a uniform k-subset of the candidates."""
    return sample_absent(size, excluded, k, generator)


def _unexplored_sampler(size: int, excluded: torch.Tensor, fired: Callable[[], torch.Tensor], k: int,
                        generator: torch.Generator) -> torch.Tensor:
    """ITOP appendix F: uniform among never-activated positions first, then among the rest."""
    return grow_unexplored(size, excluded, fired(), k, generator)


def _momentum_score(view: LayerView) -> torch.Tensor:
    """SNFS: |EMA(0.9) of dense gradients|."""
    assert view.momentum is not None
    return view.momentum.abs()


register_growth_criterion(GrowthCriterion("random", sampler=_random_sampler))
register_growth_criterion(GrowthCriterion("gradient", grad_score=torch.abs, needs="grad"))
register_growth_criterion(GrowthCriterion("momentum", score=_momentum_score, needs="momentum"))
register_growth_criterion(GrowthCriterion("unexplored", sampler=_unexplored_sampler))


# ----------------------------------------------------------------------------- drop

@register_drop("magnitude")
def magnitude_drop(view: LayerView) -> torch.Tensor:
    """Drop the active weights of smallest |w|."""
    return view.weight.abs()


@register_drop_selector("negativity")
def negativity_drop(view: LayerView, k: int, generator: torch.Generator) -> torch.Tensor:
    """SET's two-sided rule: drop the weights closest to zero on each side of it.

    ceil(k/2) of the smallest non-negative weights and floor(k/2) of the least negative ones (a
    zero counts on the positive side); when one side has too few, the other gives the rest. The
    public code dropped the most negative weights instead (sparse_learning #19).
    """
    w = view.weight.detach().reshape(-1)
    pos = (w >= 0).nonzero().squeeze(1)
    neg = (w < 0).nonzero().squeeze(1)
    k_pos = min(pos.numel(), k - min(neg.numel(), k // 2))
    k_neg = k - k_pos
    drop_pos = pos[select_topk(w[pos], k_pos, generator, largest=False)]
    drop_neg = neg[select_topk(w[neg], k_neg, generator, largest=True)]
    return torch.cat([drop_pos, drop_neg]).sort().values


@register_drop("random")
def random_drop(view: LayerView) -> torch.Tensor:
    """Drop uniformly at random among the active weights (an ablation)."""
    return view.uniform()
