"""Fixtures of the sparse-module tests."""
import pytest
import torch
import torch.nn.functional as F

from sparsetime.core.criteria import get_drop, get_growth
from sparsetime.core.exploration import ExplorationTracker
from sparsetime.core.update import LayerUpdate, UpdateContext, choose_drops, drop_and_grow
from sparsetime.nn import SparseModule, SparseStore


def _store_update(layer: SparseModule, k: int, growth: str = "random", generator: torch.Generator | None = None,
                  optimizer: torch.optim.Optimizer | None = None, regrow_dropped: bool = True,
                  fired: torch.Tensor | None = None) -> tuple[LayerUpdate, ExplorationTracker]:
    """One engine update of one sparse layer: magnitude drop of k, k grown by ``growth``, through
    the same functions as ``DynamicSparsity`` (its sparse store, drop view, growth and tracker)."""
    store = SparseStore("w", layer, optimizer)
    tracker = ExplorationTracker({"w": (store.size, fired if fired is not None else store.active())})
    ctx = UpdateContext(drop=get_drop("magnitude"), growth=get_growth(growth),
                        generator=generator or torch.Generator().manual_seed(0), tracker=tracker,
                        regrow_dropped=regrow_dropped, redistribution=False, gradient=lambda name: None,
                        momentum={})
    return drop_and_grow(store, choose_drops(store, k, ctx), k, 1, ctx), tracker


@pytest.fixture
def store_update():
    """``store_update(layer, k, growth, generator, optimizer, regrow_dropped, fired)`` -> (update, tracker)."""
    return _store_update


def _train_twins(models, optimizers, sparsifiers, x: torch.Tensor, y: torch.Tensor, steps: int = 4) -> None:
    """``steps`` training steps (cross-entropy, backward, optimizer, sparsifier), the models in turn."""
    for _ in range(steps):
        for model, opt, sp in zip(models, optimizers, sparsifiers):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sp.step()


@pytest.fixture
def train_twins():
    """``train_twins(models, optimizers, sparsifiers, x, y, steps=4)``: the models trained step by step in turn."""
    return _train_twins
