"""The one storage interface of a sparse layer, and the registry of sparse execution.

A :class:`LayerStore` holds one sparse weight and whatever keeps it sparse: the update step, the
exploration tracker and the checkpoint state talk to every layer through it, in sorted int64 flat
indices (``row * cols + col`` over the weight viewed as (out, fan_in), which is also CSR order).
Two implementations exist: :class:`sparsetime.core.masked_store.MaskedStore` (a dense tensor
times a bool mask, any layer and device) and the sparse store of :mod:`sparsetime.nn` (values +
CSR indices, nothing dense). The sparse one is offered by a :class:`SparseProvider` that
``sparsetime.nn`` registers on import, so the core never imports ``nn`` or ``kernels``.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import torch
from torch import nn

from .criteria import GrowthCriterion


class LayerStore(ABC):
    """One sparse weight: its active set, a view for dropping, replacement, hygiene, masks."""

    #: "masked" or "sparse": how the layer executes
    execution: str = "masked"
    #: True when the layer holds a dense weight and gradient (dense growth scores are possible)
    dense: bool = True

    def __init__(self, name: str, shape: Sequence[int]) -> None:
        self.name = name
        self.shape = tuple(int(s) for s in shape)
        self.size = math.prod(self.shape)

    # ---- the active set
    @abstractmethod
    def count(self) -> int:
        """Number of active weights."""

    @abstractmethod
    def active(self) -> torch.Tensor:
        """Sorted int64 flat indices of the active weights (do not modify)."""

    @abstractmethod
    def values(self) -> torch.Tensor:
        """The active weights (detached, 1-D), aligned with :meth:`active`."""

    @abstractmethod
    def active_grad(self) -> torch.Tensor | None:
        """The gradient at the active weights (1-D, aligned with :meth:`active`), if any."""

    # ---- changing it
    @abstractmethod
    def replace(self, keep: torch.Tensor, grown: torch.Tensor) -> torch.Tensor:
        """Keep the entries ``keep`` (sorted positions into :meth:`active`), add the sorted flat
        positions ``grown`` (strictly inactive) at exactly 0 with zero optimizer state.

        Returns, for each entry of the new active set, its old position or -1 if grown.
        """

    @abstractmethod
    def set_active(self, flat: torch.Tensor) -> None:
        """Switch to the sorted positions ``flat`` (a restored checkpoint); entries already
        active keep their value and optimizer state, the others start at 0."""

    def after_step(self) -> None:
        """Zero whatever the optimizer step may have written at inactive positions."""

    @classmethod
    def after_step_all(cls, stores: Sequence["LayerStore"]) -> None:
        """:meth:`after_step` for several stores of this class (implementations may fuse them)."""
        for store in stores:
            store.after_step()

    # ---- dense forms, on demand
    @abstractmethod
    def dense_mask(self) -> torch.Tensor:
        """Bool mask of the weight's shape (for a sparse store: materialised, O(size))."""

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Where the layer's tensors live."""

    # ---- gradients
    def keep_dense_gradient(self, enabled: bool) -> None:
        """Whether the next backward must leave what dense gradient growth reads."""

    def gradient_topk(self, k: int, excluded: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor],
                      generator: torch.Generator) -> torch.Tensor:
        """The k positions outside ``excluded`` with the largest ``transform(dL/dW)`` of the last
        backward (for stores without a dense gradient)."""
        raise NotImplementedError(f"{type(self).__name__} has no gradient scoring")


class SparseProvider(Protocol):
    """What sparse execution offers the engine (registered by :mod:`sparsetime.nn`)."""

    def prebuilt(self, model: nn.Module) -> dict[str, nn.Module]:
        """{weight name: module} of the sparse modules already in ``model``."""

    def why_not(self, model: nn.Module, name: str, param: torch.Tensor,
                growth: GrowthCriterion) -> str | None:
        """None when the layer owning ``name`` can run sparse with this growth, else the reason."""

    def supports_device(self, device: torch.device) -> bool:
        """Whether sparse kernels exist on ``device``."""

    def prefers(self, shape: tuple[int, ...], density: float, device: torch.device) -> bool:
        """Whether sparse execution is faster for this layer (``execution="auto"``)."""

    def convert(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                masks: Mapping[str, torch.Tensor]) -> dict[str, LayerStore]:
        """Replace the named dense layers by sparse modules in place; their stores."""

    def wrap(self, modules: Mapping[str, nn.Module], optimizer: torch.optim.Optimizer) -> dict[str, LayerStore]:
        """Stores of sparse modules already in the model."""


_PROVIDER: list[SparseProvider] = []


def register_sparse_provider(provider: SparseProvider) -> None:
    """Install the sparse execution provider (``sparsetime.nn`` does this on import)."""
    _PROVIDER[:] = [provider]


def sparse_provider() -> SparseProvider | None:
    """The registered sparse execution provider, or None."""
    return _PROVIDER[0] if _PROVIDER else None
