"""Index-space topology primitives and one full drop/grow update of a SparseLinear."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetime.core.topk import select_topk
from sparsetime.kernels import (complement_sorted, drop_smallest, gradient_growth, grow_unexplored,
                                merge_topology, remap, sample_absent, union_sorted)
from sparsetime.nn import SparseLinear, prune_and_grow


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 60), data=st.data())
def test_complement_matches_set_difference(n, data):
    excl = sorted(data.draw(st.sets(st.integers(0, max(n - 1, 0)), max_size=n)) if n else [])
    got = complement_sorted(torch.tensor(excl, dtype=torch.long), n).tolist()
    assert got == sorted(set(range(n)) - set(excl))


@pytest.mark.parametrize("n, n_excl, k", [(50, 20, 10), (400_000, 10_000, 3_000)])
def test_sample_absent_exact_distinct_and_outside_exclusion(n, n_excl, k):
    g = torch.Generator().manual_seed(0)
    excl = torch.randperm(n, generator=g)[:n_excl].sort().values
    got = sample_absent(n, excl, k, g)
    assert got.numel() == k and got.unique().numel() == k
    assert torch.equal(got, got.sort().values)
    assert not torch.isin(got, excl).any()
    assert int(got.min()) >= 0 and int(got.max()) < n


def test_sample_absent_small_is_uniform():
    excl = torch.tensor([2, 5])
    counts = torch.zeros(10)
    reps = 1000
    g = torch.Generator().manual_seed(1)
    for _ in range(reps):
        counts[sample_absent(10, excl, 3, g)] += 1
    assert counts[2] == 0 and counts[5] == 0
    free = counts[[0, 1, 3, 4, 6, 7, 8, 9]]
    expected = reps * 3 / 8  # 375, binomial sd ~ 15
    assert (free - expected).abs().max() < 90


def test_sample_absent_rejection_path_is_uniform():
    n = 100_000
    excl = torch.arange(0, n, 4)  # 25,000 excluded -> rejection sampling, not enumeration
    g = torch.Generator().manual_seed(2)
    hits = torch.zeros(10)
    reps, k = 40, 2_000
    for _ in range(reps):
        got = sample_absent(n, excl, k, g)
        assert not torch.isin(got, excl).any() and got.unique().numel() == k
        hits += torch.bincount(got // (n // 10), minlength=10).float()
    expected = reps * k / 10  # 8,000 per decile, sd ~ 85
    assert (hits - expected).abs().max() < 600


def test_sample_absent_rejects_impossible_request():
    with pytest.raises(ValueError, match="free"):
        sample_absent(5, torch.tensor([0, 1, 2]), 3)


def test_drop_smallest_matches_sort_and_breaks_ties_by_seed():
    v = torch.tensor([0.5, -0.1, 2.0, 0.3, -0.05, 1.0])
    keep, drop = drop_smallest(v, 2)
    assert drop.tolist() == [1, 4] and keep.tolist() == [0, 2, 3, 5]
    tied = torch.tensor([1.0, -1.0, 1.0, 1.0, 3.0, -1.0])
    picks = set()
    for seed in range(20):
        keep, drop = drop_smallest(tied, 2, torch.Generator().manual_seed(seed))
        assert drop.numel() == 2 and keep.numel() == 4 and 4 in keep.tolist()
        picks.add(tuple(drop.tolist()))
        again = drop_smallest(tied, 2, torch.Generator().manual_seed(seed))[1]
        assert torch.equal(drop, again)
    assert len(picks) > 1


def test_merge_and_remap_by_hand():
    old_flat = torch.tensor([2, 5, 7, 11])
    keep = torch.tensor([0, 2, 3])  # drop flat 5
    new_flat, src = merge_topology(old_flat, keep, torch.tensor([1, 5]))
    assert new_flat.tolist() == [1, 2, 5, 7, 11]
    assert src.tolist() == [-1, 0, -1, 2, 3]  # 5 dropped and regrown counts as new
    assert remap(torch.tensor([10.0, 20.0, 30.0, 40.0]), src).tolist() == [0.0, 10.0, 0.0, 30.0, 40.0]
    with pytest.raises(ValueError, match="overlap"):
        merge_topology(old_flat, keep, torch.tensor([7]))


def test_grow_unexplored_prefers_never_active():
    n = 20
    active = torch.tensor([0, 1, 2])
    fired = torch.arange(0, 15)  # unexplored: 15..19
    g = torch.Generator().manual_seed(0)
    got = grow_unexplored(n, active, fired, 3, g)
    assert set(got.tolist()) <= set(range(15, 20)) and got.numel() == 3
    got = grow_unexplored(n, active, fired, 8, g)  # all 5 unexplored + 3 explored inactive
    assert set(range(15, 20)) <= set(got.tolist())
    assert not torch.isin(got, active).any() and got.unique().numel() == 8


def _dense_scores(xt, gyt, excluded, shape):
    s = (gyt @ xt.t()).abs().reshape(-1)
    s[excluded] = float("-inf")
    return s


@pytest.mark.parametrize("block_elems", [7, 1 << 22])
def test_gradient_growth_matches_dense_topk(block_elems):
    g = torch.Generator().manual_seed(0)
    xt, gyt = torch.randn(13, 5, generator=g), torch.randn(9, 5, generator=g)
    excluded = torch.randperm(117, generator=g)[:40].sort().values
    got = gradient_growth(xt, gyt, excluded, 25, g, block_elems=block_elems)
    ref = select_topk(_dense_scores(xt, gyt, excluded, (9, 13)), 25)
    assert torch.equal(got, ref)


def test_gradient_growth_ties_at_zero_are_exact_and_random():
    g = torch.Generator().manual_seed(0)
    xt = torch.randn(10, 4, generator=g)
    xt[3:] = 0.0  # inputs 3..9 never fire -> their gradient columns are exactly zero
    gyt = torch.randn(6, 4, generator=g)
    excluded = torch.tensor([0, 1, 10, 25, 33])  # some active weights, incl. zero-gradient ones
    nonzero_cand = [i for i in range(60) if i % 10 < 3 and i not in excluded.tolist()]
    k = len(nonzero_cand) + 5
    seen = set()
    for seed in range(6):
        got = gradient_growth(xt, gyt, excluded, k, torch.Generator().manual_seed(seed), block_elems=11)
        assert got.numel() == k and got.unique().numel() == k
        assert not torch.isin(got, excluded).any()
        assert set(nonzero_cand) <= set(got.tolist())
        seen.add(tuple(got.tolist()))
    assert len(seen) > 1


def test_prune_and_grow_keeps_invariants_and_optimizer_state():
    torch.manual_seed(0)
    layer = SparseLinear(30, 20, 0.2, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    layer(torch.randn(8, 30)).pow(2).sum().backward()
    opt.step()
    before_vals = dict(zip(layer.flat_indices().tolist(), layer.weight_values.detach().tolist()))
    before_m = dict(zip(layer.flat_indices().tolist(), opt.state[layer.weight_values]["exp_avg"].tolist()))
    fired = layer.flat_indices()
    nnz = layer.nnz
    upd = prune_and_grow(layer, 30, "random", torch.Generator().manual_seed(1), opt, fired=fired)
    assert layer.nnz == nnz and upd.dropped.numel() == 30 and upd.grown.numel() == 30
    # the 30 dropped are the smallest |w|
    thresh = sorted(abs(v) for v in before_vals.values())[29]
    assert all(abs(before_vals[f]) <= thresh for f in upd.dropped.tolist())
    new = layer.flat_indices().tolist()
    m = opt.state[layer.weight_values]["exp_avg"]
    grown = set(upd.grown.tolist())
    for j, f in enumerate(new):
        if f in grown:
            assert layer.weight_values[j].item() == 0.0 and m[j].item() == 0.0
        else:
            assert layer.weight_values[j].item() == before_vals[f] and m[j].item() == before_m[f]
    assert torch.equal(upd.fired, union_sorted(fired, upd.grown))
    assert upd.fired.numel() >= fired.numel()
    # forward still agrees with the dense weight after the rebuild (transpose index rebuilt too)
    x = torch.randn(3, 30, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    layer(x).sum().backward()
    torch.nn.functional.linear(x2, layer.to_dense().detach(), layer.bias.detach()).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_prune_and_grow_without_regrowing_dropped_and_gradient_mode():
    layer = SparseLinear(12, 10, 0.3, generator=torch.Generator().manual_seed(3))
    upd = prune_and_grow(layer, 10, "random", torch.Generator().manual_seed(4), regrow_dropped=False)
    assert not torch.isin(upd.grown, upd.dropped).any()
    layer.capture_gradient_inputs(True)
    x = torch.randn(5, 12)
    layer(x).pow(2).sum().backward()
    excluded_expected = layer.flat_indices()
    dense_grad = (2 * torch.nn.functional.linear(x, layer.to_dense().detach(), layer.bias.detach())).t() @ x
    upd = prune_and_grow(layer, 6, "gradient", torch.Generator().manual_seed(5))
    kept = excluded_expected[~torch.isin(excluded_expected, upd.dropped)]
    s = dense_grad.abs().reshape(-1)
    s[kept] = float("-inf")
    assert torch.equal(upd.grown, select_topk(s, 6))
    with pytest.raises(ValueError, match="allowed"):
        prune_and_grow(layer, 1, "momentum")
