"""RigL growth scores in row blocks against a dense top-k, ties included."""
import pytest
import torch

from sparsetime.core.topk import select_topk
from sparsetime.kernels import gradient_growth


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
