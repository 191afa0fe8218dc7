"""Bad input raises a ValueError naming the value and what is allowed; the model is untouched."""
import pytest
import torch
from torch import nn

import sparsetime as st

from helpers import make_model


def fresh():
    torch.manual_seed(0)
    model, _, _ = make_model("mlp")
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


CASES = [
    (dict(density=0.0), "density must be a number in \\(0, 1\\]"),
    (dict(density=1.2), "got 1.2"),
    (dict(density=0.1, distribution="erdos"), "unknown distribution 'erdos'; allowed: uniform, er, erk"),
    (dict(density=0.1, growth="magic"), "unknown growth 'magic'; allowed: random, gradient, momentum, unexplored"),
    (dict(density=0.1, drop="tiny"), "unknown drop criterion 'tiny'; allowed: magnitude"),
    (dict(density=0.1, drop_schedule="step"), "unknown drop_schedule 'step'; allowed: constant, cosine, linear"),
    (dict(density=0.1, dense_layers=["fc3"]), "dense_layers pattern 'fc3' matches no sparsifiable layer; allowed names: 0.weight"),
    (dict(density=0.1, drop_fraction=1.5), "drop_fraction must be in \\[0, 1\\], got 1.5"),
    (dict(density=0.1, update_interval=0), "update_interval must be a positive int or None"),
    (dict(density=0.1, stop_fraction=0.5, total_steps=None), "total_steps is required"),
    (dict(density=0.1, execution="gpu"), "unknown execution 'gpu'"),
    (dict(density=None), "density is required"),
    (dict(density=0.1, distribution={"0*": 1.0, "2*": 1.0}), "must be in \\(0, 1\\]"),
    (dict(density=0.1, initial_masks={"0.weight": torch.ones(30, 20, dtype=torch.bool)}), "missing"),
]


@pytest.mark.parametrize("kwargs,message", CASES)
def test_bad_arguments(kwargs, message):
    model, opt = fresh()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        st.DynamicSparsity(model, opt, **{"total_steps": 10, **kwargs})
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert opt.state == {} or all(not s for s in opt.state.values())


def test_model_without_sparsifiable_layer():
    model = nn.Sequential(nn.BatchNorm1d(4), nn.ReLU())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="no sparsifiable layer"):
        st.DynamicSparsity(model, opt, density=0.1, update_interval=None)


def test_optimizer_not_holding_the_model():
    model, _ = fresh()
    other = nn.Linear(3, 3)
    opt = torch.optim.SGD(other.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="optimizer does not hold these sparse parameters of the model: 0.weight"):
        st.DynamicSparsity(model, opt, density=0.1, update_interval=None)


def test_dense_layers_switches():
    model, opt = fresh()
    sp = st.DynamicSparsity(model, opt, density=0.1, dense_first=True, dense_last=True, update_interval=None)
    assert list(sp.masks) == ["2.weight"]
    assert torch.count_nonzero(model[0].weight) == model[0].weight.numel()
    model, opt = fresh()
    with pytest.raises(ValueError, match="nothing is left"):
        st.DynamicSparsity(model, opt, density=0.1, dense_layers=["*"], update_interval=None)


def test_initial_masks_define_density_and_skip_rescaling():
    model, opt = fresh()
    masks = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in model.named_parameters() if n.endswith("weight")}
    for m in masks.values():
        m.view(-1)[::4] = True
    w0 = model[0].weight.detach().clone()
    sp = st.DynamicSparsity(model, opt, initial_masks=masks, update_interval=None)
    assert sp.density() == sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    assert torch.equal(model[0].weight.detach(), w0 * masks["0.weight"])
