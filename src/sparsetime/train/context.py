"""What a sparsity method's factory is given to build its sparsifier."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .config import SparsityConfig


@dataclass(frozen=True)
class SparsifierContext:
    """Everything a factory may use. ``train_batches()`` gives a fresh, seeded iterator of
    training batches (on ``device``) for methods that score weights on data before training;
    it does not disturb the training data order; ``test_batches()`` the test set's batches (on
    ``device``, for methods that report an untrained accuracy). ``resuming`` is True when the state will be
    overwritten from a checkpoint right away, so expensive initial scoring can be skipped;
    ``sparse_layers`` then names the layers that checkpoint stores as sparse modules (pass it to
    ``DynamicSparsity(sparse_layers=...)``: the model must be rebuilt with the plan it was saved with)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    sparsity: SparsityConfig
    total_steps: int
    steps_per_epoch: int
    seed: int
    device: torch.device
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    train_batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]
    resuming: bool = False
    test_batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]] | None = None
    sparse_layers: frozenset[str] | None = None
