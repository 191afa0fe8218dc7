"""Supermasks: a ticket's mask evaluated untrained, and scored masks with straight-through gradients."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from sparsetime.pruning.supermask import ScoredMask, mask_accuracy, supermask_weights, topk_layer_mask


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


def test_edge_popup_gradient_is_straight_through_the_absolute_score():
    scored = ScoredMask(torch.ones(2, 2), 0.5, "edge_popup", torch.Generator().manual_seed(0))
    with torch.no_grad():
        scored.scores.copy_(torch.tensor([[0.3, -0.2], [-0.5, 0.1]]))
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    out = scored(w).sum()
    out.backward()
    # layers rank by |s|: d(w * m)/ds = w * sign(s), so a step that lowers the loss moves |s| the right way
    assert torch.equal(scored.scores.grad, torch.tensor([[1.0, -2.0], [-3.0, 4.0]]))
    assert torch.equal(topk_layer_mask(torch.tensor([0.1, 0.9, 0.5, 0.2]), 0.5), torch.tensor([0.0, 1.0, 1.0, 0.0]))


def test_unknown_algorithm_is_refused():
    with pytest.raises(ValueError, match="'popup'.*allowed: edge_popup, bernoulli"):
        ScoredMask(torch.ones(2, 2), 0.5, "popup")


@pytest.mark.parametrize("algorithm, lr", [("edge_popup", 0.5), ("bernoulli", 50.0)])
def test_training_the_scores_lowers_the_loss_of_a_fixed_batch(algorithm, lr):
    """The regression that kept supermasks at chance: the scores must descend, not ascend, the loss."""
    torch.manual_seed(0)
    teacher = nn.Linear(30, 5)
    x = torch.randn(256, 30)
    y = teacher(x).argmax(1)
    layer = nn.Linear(30, 5)
    layer.weight.requires_grad_(False)
    layer.bias.requires_grad_(False)
    with torch.no_grad():
        layer.weight.copy_(supermask_weights(layer.weight, 0.5, "signed_constant", torch.Generator().manual_seed(1)))
    scored = ScoredMask(layer.weight, 0.5, algorithm, torch.Generator().manual_seed(2))
    parametrize.register_parametrization(layer, "weight", scored)
    optimizer = torch.optim.SGD([scored.scores], lr=lr, momentum=0.9)

    def eval_loss() -> float:
        layer.eval()
        with torch.no_grad():
            loss = float(nn.functional.cross_entropy(layer(x), y))
        layer.train()
        return loss

    before = eval_loss()
    for _ in range(60):
        loss = nn.functional.cross_entropy(layer(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert eval_loss() < 0.9 * before


def test_supermask_weights_follow_the_scaled_kaiming_std():
    weight = torch.empty(400, 250)
    std = math.sqrt(2.0 / (0.1 * 250))
    signed = supermask_weights(weight, 0.1, "signed_constant", torch.Generator().manual_seed(0))
    assert torch.equal(signed.abs(), torch.full_like(signed, std))
    assert abs(float((signed > 0).float().mean()) - 0.5) < 0.01  # random signs
    normal = supermask_weights(weight, 0.1, "kaiming_normal", torch.Generator().manual_seed(0))
    assert float(normal.std()) == pytest.approx(std, rel=0.01) and abs(float(normal.mean())) < 0.01 * std
    conv = torch.empty(8, 4, 3, 3)  # fan_in = 4 * 3 * 3
    assert float(supermask_weights(conv, 0.5, "signed_constant")[0, 0, 0, 0].abs()) == pytest.approx(
        math.sqrt(2.0 / (0.5 * 36)))
    model = torch.randn(3, 3)
    assert torch.equal(supermask_weights(model, 0.3, "model"), model)
    with pytest.raises(ValueError, match="'xavier'.*allowed: signed_constant, kaiming_normal, model"):
        supermask_weights(model, 0.3, "xavier")
