"""The ``Sparsifier`` protocol: what a training loop relies on, whatever decides the masks.

Structural typing (``typing.Protocol``): ``DynamicSparsity``, the runner's GMP and lottery-level
sparsifiers and dense training all fit it without a common base class. A training loop calls
``step()`` after every ``optimizer.step()``, checkpoints with ``state_dict()`` /
``load_state_dict()``, and reads the rest for its metrics. Where a run starts (a rewound lottery
level starts at step k) is not the sparsifier's business: the loop is told explicitly.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Sparsifier(Protocol):
    """A sparsifier as a training loop sees it (``isinstance`` checks that every member exists)."""

    def step(self) -> object:
        """Book one optimiser step: keep pruned weights at zero, update the masks when due."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit (tensors and plain containers only)."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""

    def density(self) -> float:
        """Realised fraction of active weights over the sparse layers (1 for dense training)."""

    def current_densities(self) -> dict[str, float]:
        """{weight name: realised density} of every sparse layer, for FLOPs (layers left out are dense)."""

    def layer_report(self) -> list[dict[str, Any]]:
        """Per sparse layer: name, shape, size, active, density and itop_rate (None when not tracked)."""

    def exploration_rate(self) -> float | None:
        """The ITOP rate Rs (fraction of weights ever active), or None when the method does not track it."""

    @property
    def masks(self) -> Mapping[str, torch.Tensor]:
        """{weight name: bool mask} of every sparse layer (empty for dense training)."""

    @property
    def update_history(self) -> Sequence[Mapping[str, Any]] | None:
        """One record per topology update so far, or None for a method that makes no topology updates."""


MEMBERS = tuple(sorted(n for n in vars(Sparsifier) if not n.startswith("_")))


def missing_members(obj: object) -> list[str]:
    """The members of :class:`Sparsifier` that ``obj`` lacks (empty when it fits the protocol).

    Looked up without calling anything (``inspect.getattr_static``), so a property such as
    ``masks``, which may build dense masks of huge sparse layers, is not evaluated.
    """
    missing = []
    for name in MEMBERS:
        try:
            inspect.getattr_static(obj, name)
        except AttributeError:
            missing.append(name)
    return missing
