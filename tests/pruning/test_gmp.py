"""Gradual magnitude pruning: schedule values by hand, shrinking masks, zeroed weights and state, resume."""
import copy

import pytest
import torch
from torch import nn

import sparsetime.pruning as P

SCHEDULE = {"initial_density": 1.0, "final_density": 0.1, "start_step": 10, "end_step": 40, "frequency": 10}


@pytest.mark.parametrize("step,expected", [
    (0, 1.0), (9, 1.0), (10, 1.0),               # before / at t0: s = s_i = 0
    (20, 1 - (0.9 - 0.9 * (2 / 3) ** 3)),         # s = 0.9 + (0 - 0.9)(1 - 1/3)^3 = 0.6333...
    (25, 1 - (0.9 - 0.9 * (2 / 3) ** 3)),         # constant between pruning steps
    (30, 1 - (0.9 - 0.9 * (1 / 3) ** 3)),         # 0.8666... sparsity
    (39, 1 - (0.9 - 0.9 * (1 / 3) ** 3)),
    (40, 0.1), (1000, 0.1),
])
def test_schedule_values_by_hand(step, expected):
    assert P.gmp_density(step, **SCHEDULE) == pytest.approx(expected, abs=1e-12)


def test_schedule_with_initial_density_below_one():
    # s_i = 0.5, s_f = 0.8, n*dT = 4: at t0 + 2 s = 0.8 + (0.5 - 0.8) * (1/2)^3 = 0.7625
    assert P.gmp_density(2, 0.5, 0.2, 0, 4, 1) == pytest.approx(1 - 0.7625)
    assert P.gmp_density(0, 0.5, 0.2, 0, 4, 1) == pytest.approx(0.5)


@pytest.mark.parametrize("kwargs,match", [
    ({"end_step": 45}, "unreachable"),                          # 35 not a multiple of 10
    ({"final_density": 1.2}, "final_density"),
    ({"final_density": 0.0}, "final_density"),
    ({"initial_density": 0.05}, "above initial_density"),
    ({"end_step": 10}, "after start_step"),
    ({"frequency": 0}, "frequency"),
    ({"start_step": -1}, "start_step"),
])
def test_bad_schedules(kwargs, match):
    with pytest.raises(ValueError, match=match):
        P.gmp_density(20, **{**SCHEDULE, **kwargs})


def _setup(seed=0, opt="sgd"):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    if opt == "sgd":
        optim = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    else:
        optim = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=1e-3)
    return model, optim


def _train_step(model, optim, g):
    x = torch.randn(16, 8, generator=g)
    y = torch.randint(0, 4, (16,), generator=g)
    optim.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optim.step()


def test_gmp_rejects_end_beyond_training_and_empty_final():
    model, optim = _setup()
    with pytest.raises(ValueError, match="beyond training"):
        P.GradualMagnitudePruner(model, optim, 0.1, 10, 40, 10, total_steps=30)
    with pytest.raises(ValueError, match="unreachable"):
        P.GradualMagnitudePruner(model, optim, 0.001, 10, 40, 10)  # round(0.001 * 192) == 0
    with pytest.raises(ValueError, match="no sparsifiable layer"):
        P.GradualMagnitudePruner(nn.Sequential(nn.BatchNorm1d(3)), None, 0.1, 10, 40, 10)


@pytest.mark.parametrize("opt,scope,final", [("sgd", "global", 0.3), ("adam", "layer", 0.1)])
def test_gmp_masks_shrink_counts_exact_weights_and_state_zero(opt, scope, final):
    model, optim = _setup(1, opt)
    pruner = P.GradualMagnitudePruner(model, optim, final, 2, 12, 2, scope=scope)
    params = dict(model.named_parameters())
    sizes = {"0.weight": 128, "2.weight": 64}
    g = torch.Generator().manual_seed(0)
    previous = {n: m.clone() for n, m in pruner.masks.items()}
    for step in range(1, 16):
        _train_step(model, optim, g)
        pruner.step()
        assert pruner.step_count == step
        d = P.gmp_density(step, 1.0, final, 2, 12, 2)
        if scope == "global":
            assert sum(int(m.sum()) for m in pruner.masks.values()) == round(d * 192)
        else:
            for n, m in pruner.masks.items():
                assert int(m.sum()) == round(d * sizes[n])
        for n, m in pruner.masks.items():
            assert not (m & ~previous[n]).any(), "mask grew"
            assert (params[n][~m] == 0).all()
            for v in optim.state[params[n]].values():
                if torch.is_tensor(v) and v.shape == m.shape:
                    assert (v[~m] == 0).all()
        previous = {n: m.clone() for n, m in pruner.masks.items()}
    assert pruner.density == pytest.approx(round(0.3 * 192) / 192 if scope == "global" else (13 + 6) / 192)


def test_gmp_global_collapse_is_reported_and_masks_kept():
    """Global pruning to 10% removes every weight of the small-init classifier here."""
    model, optim = _setup(1)
    pruner = P.GradualMagnitudePruner(model, optim, 0.1, 2, 12, 2)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="2.weight"):
        for _ in range(12):
            _train_step(model, optim, g)
            before = {n: m.clone() for n, m in pruner.masks.items()}
            pruner.step()
    assert all(torch.equal(pruner.masks[n], before[n]) for n in before)


def test_gmp_prunes_smallest_magnitudes():
    model, optim = _setup(2)
    pruner = P.GradualMagnitudePruner(model, optim, 0.5, 0, 1, 1)
    weights = {n: p.detach().abs().clone() for n, p in model.named_parameters() if n.endswith("weight")}
    pruner.step()  # step 1 == end_step: prune straight to 0.5, by |w| before any training
    kept = torch.cat([weights[n][m] for n, m in pruner.masks.items()])
    dropped = torch.cat([weights[n][~m] for n, m in pruner.masks.items()])
    assert kept.numel() == 96 and kept.min() >= dropped.max()


def test_gmp_state_dict_roundtrip_into_a_fresh_pruner():
    model, optim = _setup(3)
    pruner = P.GradualMagnitudePruner(model, optim, 0.2, 1, 5, 1)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        _train_step(model, optim, g)
        pruner.step()
    state = pruner.state_dict()
    model2, optim2 = _setup(4)
    model2.load_state_dict(model.state_dict())
    optim2.load_state_dict(copy.deepcopy(optim.state_dict()))  # load_state_dict shares tensors
    resumed = P.GradualMagnitudePruner(model2, optim2, 0.2, 1, 5, 1)
    resumed.load_state_dict(state)
    assert resumed.step_count == 3
    for n in pruner.masks:
        assert torch.equal(resumed.masks[n], pruner.masks[n])
    for seed in range(3):  # both continue identically through the remaining pruning steps
        _train_step(model, optim, torch.Generator().manual_seed(seed))
        pruner.step()
        _train_step(model2, optim2, torch.Generator().manual_seed(seed))
        resumed.step()
    for n in pruner.masks:
        assert torch.equal(resumed.masks[n], pruner.masks[n])
    assert pruner.density == pytest.approx(round(0.2 * 192) / 192)
    other = P.GradualMagnitudePruner(model2, optim2, 0.3, 1, 5, 1)
    with pytest.raises(ValueError, match="schedule"):
        other.load_state_dict(state)
