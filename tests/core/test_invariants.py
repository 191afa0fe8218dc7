"""The sparsity invariants after every sparsifier step (inactive weights and optimizer state exactly
zero, counts kept), over models, optimizers and growth criteria."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs

import sparsetime as st

from helpers import OPTIMIZERS, make_model, make_optimizer, train_steps


def check_invariants(sparsifier, optimizer):
    for name, p in sparsifier.params.items():
        mask = sparsifier.masks[name]
        assert torch.equal(p.detach()[~mask], torch.zeros_like(p.detach()[~mask])), name
        state = optimizer.state.get(p, {})
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.shape == p.shape:
                assert (value[~mask] == 0).all(), (name, key)


def run_and_check(kind, opt_name, growth, density, interval, redistribution=False, steps=25, seed=0):
    torch.manual_seed(seed)
    model, shape, classes = make_model(kind)
    optimizer = make_optimizer(opt_name, model.parameters())
    sp = st.DynamicSparsity(model, optimizer, density=density, growth=growth, update_interval=interval,
                            total_steps=steps, redistribution=redistribution, seed=seed)
    counts = {n: int(m.sum()) for n, m in sp.masks.items()}
    total = sum(counts.values())
    updates = []

    def on_step(before, stats):
        check_invariants(sp, optimizer)
        now = {n: int(m.sum()) for n, m in sp.masks.items()}
        if redistribution:
            assert sum(now.values()) == total
        else:
            assert now == counts
        assert sp.density() == sum(now.values()) / sum(p.numel() for p in sp.params.values())
        if stats is not None:
            updates.append(stats)
            for n, mask in sp.masks.items():
                new = mask & ~before[n]
                p = sp.params[n]
                assert (p.detach()[new] == 0).all()
                for v in optimizer.state.get(p, {}).values():
                    if isinstance(v, torch.Tensor) and v.shape == p.shape:
                        assert (v[new] == 0).all()

    train_steps(model, optimizer, sp, steps, shape, classes, seed=seed, on_step=on_step)
    return sp, updates


@pytest.mark.parametrize("opt_name", OPTIMIZERS)
@pytest.mark.parametrize("kind", ["mlp", "resconv", "conv13"])
def test_invariants_every_optimizer_and_layer_type(kind, opt_name):
    sp, updates = run_and_check(kind, opt_name, "random", 0.3, interval=5)
    assert len(updates) == 5
    assert sum(u["changed"] for u in updates) > 0


@pytest.mark.parametrize("growth", ["random", "gradient", "momentum", "unexplored"])
def test_invariants_every_growth(growth):
    run_and_check("resconv", "adam", growth, 0.2, interval=4)


def test_invariants_with_redistribution():
    sp, updates = run_and_check("mlp", "sgd_momentum_wd", "momentum", 0.2, interval=5, redistribution=True)
    assert len(updates) == 5


@settings(max_examples=15, deadline=None)
@given(kind=hs.sampled_from(["mlp", "resconv", "conv13"]), opt=hs.sampled_from(OPTIMIZERS),
       growth=hs.sampled_from(["random", "gradient", "momentum", "unexplored"]),
       density=hs.floats(0.02, 0.95), interval=hs.integers(1, 6), seed=hs.integers(0, 1000),
       redistribution=hs.booleans())
def test_invariants_property(kind, opt, growth, density, interval, redistribution, seed):
    run_and_check(kind, opt, growth, density, interval, redistribution=redistribution, steps=12, seed=seed)


@pytest.mark.parametrize("opt_name", ["sgd_momentum_wd", "nesterov", "adam", "adamw"])
def test_gradient_masking_fast_path_is_bit_identical_to_full_remasking(opt_name):
    results = []
    for fast in (True, False):
        torch.manual_seed(0)
        model, shape, classes = make_model("resconv")
        opt = make_optimizer(opt_name, model.parameters())
        sp = st.DynamicSparsity(model, opt, density=0.2, update_interval=4, total_steps=20, growth="gradient",
                                grad_masking=fast)
        assert sp.grad_masking is fast
        train_steps(model, opt, sp, 20, shape, classes)
        check_invariants(sp, opt)
        results.append((model.state_dict(), {n: m.clone() for n, m in sp.masks.items()}))
    (wa, ma), (wb, mb) = results
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


def test_unknown_optimizer_gets_full_remasking():
    torch.manual_seed(0)
    model, shape, classes = make_model("mlp")
    opt = torch.optim.Adagrad(model.parameters(), lr=0.1, initial_accumulator_value=0.1)
    sp = st.DynamicSparsity(model, opt, density=0.2, update_interval=3, total_steps=9)
    assert sp.grad_masking is False
    train_steps(model, opt, sp, 9, shape, classes, on_step=lambda before, stats: check_invariants(sp, opt))
