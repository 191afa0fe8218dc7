"""Supermasks: a ticket's mask evaluated untrained, and scored masks with straight-through gradients."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from sparsetime.pruning.supermask import ScoredMask, mask_accuracy, topk_layer_mask


def test_mask_accuracy_is_the_accuracy_of_the_masked_init_computed_by_hand():
    model = nn.Linear(3, 2, bias=False)
    init = {"weight": torch.tensor([[1.0, 2.0, -1.0], [0.5, -3.0, 1.0]])}
    masks = {"weight": torch.tensor([[True, False, True], [True, True, False]])}
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    y = torch.randint(2, (50,), generator=torch.Generator().manual_seed(1))
    w = init["weight"] * masks["weight"]
    expected = ((x @ w.T).argmax(1) == y).float().mean().item()
    before = model.weight.detach().clone()
    assert mask_accuracy(model, masks, init, [(x[:20], y[:20]), (x[20:], y[20:])]) == pytest.approx(expected)
    assert torch.equal(model.weight.detach(), before)  # the caller's model is untouched


@pytest.mark.parametrize("algorithm", ["edge_popup", "bernoulli"])
def test_scored_mask_trains_the_scores_only_at_the_target_density(algorithm):
    torch.manual_seed(0)
    layer = nn.Linear(20, 10)
    weight = layer.weight.detach().clone()
    layer.weight.requires_grad_(False)
    scored = ScoredMask(layer.weight, 0.3, algorithm, torch.Generator().manual_seed(0))
    parametrize.register_parametrization(layer, "weight", scored)
    before = scored.scores.detach().clone()
    optimizer = torch.optim.SGD([scored.scores], lr=1.0)
    for _ in range(3):
        loss = layer(torch.randn(8, 20)).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert scored.scores.grad is not None and not torch.equal(scored.scores.detach(), before)
    assert torch.equal(layer.parametrizations.weight.original, weight)  # bit for bit
    assert int(scored.hard_mask().sum()) == round(0.3 * 200)
    layer.eval()
    assert torch.equal(layer.weight, weight * scored.hard_mask())


def test_edge_popup_gradient_is_straight_through():
    scored = ScoredMask(torch.ones(2, 2), 0.5, "edge_popup", torch.Generator().manual_seed(0))
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    out = scored(w).sum()
    out.backward()
    assert torch.equal(scored.scores.grad, w)  # d(w * m)/ds = w: the mask's gradient passed straight through
    assert torch.equal(topk_layer_mask(torch.tensor([0.1, 0.9, 0.5, 0.2]), 0.5), torch.tensor([0.0, 1.0, 1.0, 0.0]))


def test_unknown_algorithm_is_refused():
    with pytest.raises(ValueError, match="'popup'.*allowed: edge_popup, bernoulli"):
        ScoredMask(torch.ones(2, 2), 0.5, "popup")
