"""Lottery-ticket math: level densities, exact prune_level, exact rewind (BN included), the two controls.

The experiment that chains them (rewinding modes, resume, controls as runs) is tested through
``run_lottery`` and ``sparsetime lth``.
"""
import pytest
import torch
from torch import nn

import sparsetime.pruning as P


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3))


def _train_a_bit(model, steps=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        x = torch.randn(8, 6, generator=g)
        nn.functional.cross_entropy(model(x), torch.randint(0, 3, (8,), generator=g)).backward()
        opt.step()


@pytest.mark.parametrize("level,p,expected", [(0, 0.2, 1.0), (1, 0.2, 0.8), (3, 0.2, 0.512), (2, 0.5, 0.25)])
def test_lth_density(level, p, expected):
    assert P.lth_density(level, p) == pytest.approx(expected)


@pytest.mark.parametrize("density,p,expected", [
    (0.02, 0.2, 18),   # log(0.02) / log(0.8) = 17.53
    (0.512, 0.2, 3),   # exactly (0.8)^3: no extra level for the rounding of the logarithms
    (0.5, 0.5, 1), (0.49, 0.5, 2), (1.0, 0.2, 0),
])
def test_lth_levels_is_the_fewest_levels_reaching_the_density(density, p, expected):
    assert P.lth_levels(density, p) == expected
    assert P.lth_density(expected, p) <= density + 1e-12
    assert expected == 0 or P.lth_density(expected - 1, p) > density


@pytest.mark.parametrize("p", [0, 0.0, 1, 1.0, -0.2, 1.5])
def test_fraction_outside_open_interval(p):
    with pytest.raises(ValueError, match="fraction"):
        P.lth_density(1, p)
    with pytest.raises(ValueError, match="fraction"):
        P.prune_level(_net(), fraction=p)


def test_prune_level_global_removes_p_of_active_smallest_first():
    model = _net(1)
    m1 = P.prune_level(model)  # 72 + 36 = 108 weights
    assert sum(int(m.sum()) for m in m1.values()) == round(0.8 * 108)  # 86
    m2 = P.prune_level(model, m1, 0.2)
    assert sum(int(m.sum()) for m in m2.values()) == round(0.8 * 86)  # 69
    params = dict(model.named_parameters())
    for n in m1:
        assert not (m2[n] & ~m1[n]).any()
    removed = torch.cat([params[n].detach().abs()[m1[n] & ~m2[n]] for n in m1])
    kept = torch.cat([params[n].detach().abs()[m2[n]] for n in m1])
    assert kept.min() >= removed.max()


def test_prune_level_layer_scope_counts():
    model = _net(2)
    masks = P.prune_level(model, fraction=0.5, scope="layer")
    masks = P.prune_level(model, masks, fraction=0.5, scope="layer")
    assert int(masks["0.weight"].sum()) == 18 and int(masks["3.weight"].sum()) == 9  # 72->36->18, 36->18->9


def test_snapshot_and_rewind_restore_weights_and_bn_buffers_exactly():
    model = _net(3)
    snap = P.snapshot(model)
    _train_a_bit(model)
    assert not torch.equal(model[1].running_mean, snap["1.running_mean"])  # training moved BN stats
    assert int(model[1].num_batches_tracked) == 3
    masks = P.prune_level(model, fraction=0.5)
    P.rewind(model, snap, masks)
    state = model.state_dict()
    for k, v in snap.items():
        if k in masks:
            assert torch.equal(state[k], v * masks[k]), k
            assert (state[k][~masks[k]] == 0).all()
        else:
            assert torch.equal(state[k], v), k
    assert int(model[1].num_batches_tracked) == 0


def test_snapshot_is_independent_of_later_training():
    model = _net(4)
    snap = P.snapshot(model)
    copy = {k: v.clone() for k, v in snap.items()}
    _train_a_bit(model)
    assert all(torch.equal(snap[k], copy[k]) for k in snap)


def test_rewind_rejects_foreign_snapshot():
    with pytest.raises(ValueError, match="snapshot"):
        P.rewind(_net(), P.snapshot(nn.Sequential(nn.Linear(6, 3))))


def test_random_mask_control_keeps_layer_counts():
    model = _net(9)
    masks = P.prune_level(model, fraction=0.6)
    rand = P.random_masks(masks, seed=1)
    for n in masks:
        assert int(rand[n].sum()) == int(masks[n].sum())
    assert any(not torch.equal(rand[n], masks[n]) for n in masks)
    again = P.random_masks(masks, seed=1)
    assert all(torch.equal(again[n], rand[n]) for n in masks)


def test_random_reinit_control():
    model = _net(10)
    masks = P.prune_level(model, fraction=0.5)
    before = P.snapshot(model)
    rng = torch.get_rng_state()
    P.random_reinit(model, masks, seed=3)
    assert torch.equal(torch.get_rng_state(), rng)  # global RNG untouched
    params = dict(model.named_parameters())
    for n, m in masks.items():
        assert (params[n][~m] == 0).all()
        assert not torch.equal(params[n].detach(), before[n] * m)
    other = _net(11)
    P.random_reinit(other, masks, seed=3)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in model.state_dict().items())
