"""Drop/grow selection against independent computations, and known bugs of public DST code."""
import math

import pytest
import torch
from torch import nn

import sparsetime as st
from sparsetime.core.topk import select_topk
from sparsetime.core.topology import allocate, drop_count


def one_layer(n_out=10, n_in=20, density=0.3, **kw):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(n_in, n_out, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    kw.setdefault("update_interval", 1)
    kw.setdefault("drop_schedule", "constant")
    sp = st.DynamicSparsity(model, opt, density=density, **kw)
    return model, opt, sp


def test_select_topk_exact_with_ties_and_seeded():
    scores = torch.tensor([5.0, 1.0, 3.0, 3.0, 3.0, 3.0, 0.0, 7.0])
    picks = {tuple(select_topk(scores, 4, torch.Generator().manual_seed(s)).tolist()) for s in range(30)}
    for pick in picks:
        assert len(pick) == 4 and {0, 7} <= set(pick)  # strictly above the tie always taken
        assert len(set(pick) & {2, 3, 4, 5}) == 2
    assert len(picks) > 1  # tie-break is random ...
    a = select_topk(scores, 4, torch.Generator().manual_seed(3))
    b = select_topk(scores, 4, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)  # ... and seeded
    low = select_topk(scores, 2, torch.Generator().manual_seed(0), largest=False)
    assert low.tolist() == [1, 6]


def test_select_topk_matches_sort_without_ties():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(1000, generator=g)
    for k in (0, 1, 17, 999, 1000):
        ref = torch.sort(scores, descending=True).indices[:k].sort().values
        assert torch.equal(select_topk(scores, k, g), ref)


def test_select_topk_nan_ranks_last_and_bad_k():
    scores = torch.tensor([float("nan"), 1.0, 2.0])
    assert select_topk(scores, 2).tolist() == [1, 2]
    with pytest.raises(ValueError, match="k must be"):
        select_topk(scores, 4)


def test_drop_smallest_magnitudes_and_count_rule():
    model, opt, sp = one_layer(density=0.5, drop_fraction=0.3)
    w = model[0].weight
    mask = sp.masks["0.weight"].clone()
    n = int(mask.sum())
    k = math.floor(0.3 * n)
    assert drop_count(0.3, n) == k
    mags = w.detach().abs().reshape(-1)
    active = mask.reshape(-1).nonzero().squeeze(1)
    expect_dropped = set(active[mags[active].argsort()[:k]].tolist())  # no ties in random weights
    # growth 'random' among candidates; check the dropped set = old \ new minus regrown
    model[0].weight.grad = torch.zeros_like(w)
    stats = sp.step()
    new = sp.masks["0.weight"].reshape(-1)
    lost = set((mask.reshape(-1) & ~new).nonzero().squeeze(1).tolist())
    assert lost <= expect_dropped
    assert stats["dropped"] == k and stats["grown"] == k
    assert int(new.sum()) == n


def test_growth_never_picks_active_weights_when_scores_tie_at_zero():
    """sparse_learning #22: all-zero gradient scores must not shrink the layer."""
    model, opt, sp = one_layer(density=0.5, growth="gradient", drop_fraction=0.5)
    n = int(sp.masks["0.weight"].sum())
    for _ in range(10):
        model[0].weight.grad = torch.zeros_like(model[0].weight)
        stats = sp.step()
        assert stats["grown"] == stats["dropped"] == math.floor(0.5 * n)
        assert int(sp.masks["0.weight"].sum()) == n


def test_rigl_grows_largest_dense_gradient_of_the_triggering_step():
    model, opt, sp = one_layer(density=0.3, growth="gradient", drop_fraction=0.25, regrow_dropped=False)
    w = model[0].weight
    old = sp.masks["0.weight"].clone()
    grad = torch.randn(w.shape, generator=torch.Generator().manual_seed(5))
    w.grad = grad.clone()
    sp.step()
    new = sp.masks["0.weight"]
    k = math.floor(0.25 * int(old.sum()))
    cand = (~old).reshape(-1).nonzero().squeeze(1)
    expect = set(cand[grad.abs().reshape(-1)[cand].argsort(descending=True)[:k]].tolist())
    grown = set((new & ~old).reshape(-1).nonzero().squeeze(1).tolist())
    assert grown == expect


def test_rigl_keeps_no_dense_gradient_copy_between_updates():
    model, opt, sp = one_layer(growth="gradient", update_interval=10, total_steps=100)
    state = sp.state_dict()
    assert state["grad_sum"] == {} and state["momentum"] == {}


def test_momentum_growth_uses_ema_of_dense_gradients():
    model, opt, sp = one_layer(density=0.3, growth="momentum", drop_fraction=0.25, regrow_dropped=False,
                               update_interval=3)
    w = model[0].weight
    g = torch.Generator().manual_seed(4)
    ema = torch.zeros_like(w)
    for i in range(3):
        grad = torch.randn(w.shape, generator=g)
        ema = 0.9 * ema + 0.1 * grad
        w.grad = grad
        old = sp.masks["0.weight"].clone()
        sp.step()
    cand = (~old).reshape(-1).nonzero().squeeze(1)
    k = math.floor(0.25 * int(old.sum()))
    expect = set(cand[ema.abs().reshape(-1)[cand].argsort(descending=True)[:k]].tolist())
    grown = set((sp.masks["0.weight"] & ~old).reshape(-1).nonzero().squeeze(1).tolist())
    assert grown == expect


def test_unexplored_first_growth():
    model, opt, sp = one_layer(n_out=20, n_in=50, density=0.1, growth="unexplored", drop_fraction=0.5)
    for _ in range(6):
        fired = sp.fired_masks["0.weight"].clone()
        old = sp.masks["0.weight"].clone()
        unexplored = int((~fired).sum())
        sp.step()
        grown = sp.masks["0.weight"] & ~old
        k = int(grown.sum())
        # every grown weight is unexplored while enough unexplored positions exist
        assert int((grown & fired).sum()) == max(0, k - unexplored)


def test_regrow_dropped_false_excludes_just_dropped():
    model, opt, sp = one_layer(density=0.5, drop_fraction=0.5, regrow_dropped=False)
    for _ in range(5):
        old = sp.masks["0.weight"].clone()
        sp.step()
        new = sp.masks["0.weight"]
        dropped = old & ~new
        regrown = new & ~old
        assert int(dropped.sum()) == int(regrown.sum()) > 0
        assert not (regrown & old).any()


def test_allocate_by_hand():
    assert allocate(10, [1, 1, 2], [10, 10, 10]) == [3, 2, 5]  # shares 2.5 2.5 5, tie -> first
    assert allocate(10, [1, 0, 9], [5, 5, 3]) == [5, 2, 3]
    assert sum(allocate(7, [0.2, 0.5, 0.3], [7, 7, 7])) == 7
    with pytest.raises(ValueError):
        allocate(10, [1, 1], [3, 3])


def test_redistribution_moves_budget_to_high_momentum_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 30, bias=False), nn.Linear(30, 30, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    sp = st.DynamicSparsity(model, opt, density=0.2, distribution="uniform", growth="momentum",
                            redistribution=True, update_interval=1, drop_schedule="constant",
                            drop_fraction=0.5, momentum_beta=0.0)
    n0 = int(sp.masks["0.weight"].sum())
    model[0].weight.grad = torch.ones(30, 30)
    model[1].weight.grad = torch.full((30, 30), 1e-3)
    sp.step()
    c0, c1 = int(sp.masks["0.weight"].sum()), int(sp.masks["1.weight"].sum())
    assert c0 + c1 == 2 * n0 and c0 > n0 > c1
