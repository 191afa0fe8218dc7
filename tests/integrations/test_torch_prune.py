"""Masks to and from torch.nn.utils.prune (weight_orig / weight_mask)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

import sparsetime as st
from sparsetime.integrations.torch_prune import masks_from_torch_prune, to_torch_prune
from sparsetime.nn import SparseLinear


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 24), nn.ReLU(), nn.Linear(24, 3))


def train(model, sparsifier, optimizer, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 10, generator=g)
        loss = F.cross_entropy(model(x), (x[:, 0] > 0).long())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sparsifier.step()


def test_exported_masks_are_understood_by_torch_pruning():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sparsifier = st.DynamicSparsity(model, opt, density=0.3, update_interval=3, drop_fraction=0.5,
                                    drop_schedule="constant")
    train(model, sparsifier, opt, 6)
    masks = {n: m.clone() for n, m in sparsifier.masks.items()}
    x = torch.randn(5, 10)
    before = model(x).detach()
    to_torch_prune(model, masks)
    assert prune.is_pruned(model)
    for index in (0, 2):
        layer = model[index]
        assert torch.equal(layer.weight_mask.bool(), masks[f"{index}.weight"])
        assert {n for n, _ in layer.named_parameters()} == {"weight_orig", "bias"}
    assert torch.equal(model(x), before)
    kept = int(model[0].weight_mask.sum())
    prune.l1_unstructured(model[0], "weight", amount=0.5)  # pruning again combines with the exported mask
    combined = model[0].weight_mask.bool()
    assert not combined[~masks["0.weight"]].any() and int(combined.sum()) == kept - round(0.5 * kept)
    prune.remove(model[2], "weight")
    assert isinstance(model[2].weight, nn.Parameter) and not model[2].weight.detach()[~masks["2.weight"]].any()


def test_lightning_model_pruning_makes_the_export_permanent():
    pl = pytest.importorskip("lightning.pytorch")
    model = mlp()
    masks = {"0.weight": torch.rand(24, 10) < 0.2, "2.weight": torch.rand(3, 24) < 0.5}
    expected = model[0].weight.detach() * masks["0.weight"]
    to_torch_prune(model, masks)
    pl.callbacks.ModelPruning("l1_unstructured").make_pruning_permanent(model)
    assert not prune.is_pruned(model) and torch.equal(model[0].weight.detach(), expected)


def test_sparse_modules_are_exported_as_dense_layers_with_their_pattern():
    torch.manual_seed(0)
    model = nn.Sequential(SparseLinear(10, 24, density=0.2), nn.ReLU(), nn.Linear(24, 3))
    pattern = model[0].dense_mask()
    x = torch.randn(4, 10)
    before = model(x).detach()
    to_torch_prune(model)
    assert isinstance(model[0], nn.Linear) and torch.equal(model[0].weight_mask.bool(), pattern)
    assert not hasattr(model[2], "weight_mask")  # only the sparse layers
    torch.testing.assert_close(model(x), before)


def test_masks_of_a_pruned_model_seed_dynamic_sparse_training():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # built before pruning: must stay attached
    params = [(model[0], "weight"), (model[2], "weight")]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.8)
    expected = {"0.weight": model[0].weight_mask.bool().clone(), "2.weight": model[2].weight_mask.bool().clone()}
    masks = masks_from_torch_prune(model)
    assert set(masks) == set(expected) and all(torch.equal(masks[n], expected[n]) for n in masks)
    assert not prune.is_pruned(model)
    held = {id(p) for group in opt.param_groups for p in group["params"]}
    assert id(model[0].weight) in held and id(model[2].weight) in held
    assert sum(int(m.sum()) for m in masks.values()) == round(0.2 * (240 + 72))

    sparsifier = st.DynamicSparsity(model, opt, initial_masks=masks, update_interval=2, drop_fraction=0.5,
                                    drop_schedule="constant")
    assert all(torch.equal(sparsifier.masks[n], masks[n]) for n in masks)
    train(model, sparsifier, opt, 4)
    assert sparsifier.counts == {n: int(m.sum()) for n, m in masks.items()}
    assert any(not torch.equal(sparsifier.masks[n], masks[n]) for n in masks)
    for name, mask in sparsifier.masks.items():
        assert not dict(model.named_parameters())[name].detach()[~mask].any()


def test_bad_names_and_unpruned_models_are_refused():
    with pytest.raises(ValueError, match="no tensor of the model is pruned"):
        masks_from_torch_prune(mlp())
    with pytest.raises(ValueError, match="mask name '5.weight' is not a parameter of the model; allowed"):
        to_torch_prune(mlp(), {"5.weight": torch.ones(3, 3, dtype=torch.bool)})
    model = mlp()
    with pytest.raises(ValueError, match=r"mask of '0.weight' must be a bool tensor of shape \(24, 10\)"):
        to_torch_prune(model, {"2.weight": torch.ones(3, 24, dtype=torch.bool), "0.weight": torch.ones(10, 24)})
    assert not prune.is_pruned(model)  # nothing changed
