"""Index-space topology primitives (sorted int64 flat indices) against set computations."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetime.core.index_sets import (complement_sorted, drop_smallest, grow_unexplored, merge_topology, remap,
                                        sample_absent, union_sorted)


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


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 200), st.data())
def test_union_sorted_matches_set_union(n, data):
    a = sorted(set(data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=n))))
    b = data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=40))
    got = union_sorted(torch.tensor(a, dtype=torch.long), torch.tensor(b, dtype=torch.long))
    assert got.dtype == torch.long and got.tolist() == sorted(set(a) | set(b))
