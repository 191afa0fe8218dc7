"""The sparse layer store under the engine's update step: exact counts, values and optimizer
state carried, grown entries at zero, RigL growth against a dense gradient."""
import pytest
import torch
import torch.nn.functional as F

from sparsetime.core.index_sets import union_sorted
from sparsetime.core.topk import select_topk
from sparsetime.nn import SparseConv2d, SparseLinear


def test_update_keeps_invariants_and_optimizer_state(store_update):
    torch.manual_seed(0)
    layer = SparseLinear(30, 20, 0.2, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    layer(torch.randn(8, 30)).pow(2).sum().backward()
    opt.step()
    before_vals = dict(zip(layer.flat_indices().tolist(), layer.weight_values.detach().tolist()))
    before_m = dict(zip(layer.flat_indices().tolist(), opt.state[layer.weight_values]["exp_avg"].tolist()))
    fired = layer.flat_indices()
    nnz = layer.nnz
    upd, tracker = store_update(layer, 30, "random", torch.Generator().manual_seed(1), opt)
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
    assert torch.equal(tracker.fired_indices("w"), union_sorted(fired, upd.grown))
    # forward still agrees with the dense weight after the rebuild (transpose index rebuilt too)
    x = torch.randn(3, 30, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    layer(x).sum().backward()
    F.linear(x2, layer.to_dense().detach(), layer.bias.detach()).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_update_without_regrowing_dropped_and_gradient_growth(store_update):
    layer = SparseLinear(12, 10, 0.3, generator=torch.Generator().manual_seed(3))
    upd, _ = store_update(layer, 10, "random", torch.Generator().manual_seed(4), regrow_dropped=False)
    assert not torch.isin(upd.grown, upd.dropped).any()
    layer.capture_gradient_inputs(True)
    x = torch.randn(5, 12)
    layer(x).pow(2).sum().backward()
    excluded_expected = layer.flat_indices()
    dense_grad = (2 * F.linear(x, layer.to_dense().detach(), layer.bias.detach())).t() @ x
    upd, _ = store_update(layer, 6, "gradient", torch.Generator().manual_seed(5))
    kept = excluded_expected[~torch.isin(excluded_expected, upd.dropped)]
    s = dense_grad.abs().reshape(-1)
    s[kept] = float("-inf")
    assert torch.equal(upd.grown, select_topk(s, 6))


def test_momentum_growth_needs_a_dense_layer(store_update):
    layer = SparseLinear(12, 10, 0.3, generator=torch.Generator().manual_seed(3))
    with pytest.raises(ValueError, match="cannot run on the sparse layer"):
        store_update(layer, 2, "momentum")


def test_gradient_growth_for_conv_matches_dense_gradient(store_update):
    from sparsetime.kernels import numba_available

    if not numba_available():
        pytest.skip("gradient capture for conv needs the numba kernels")
    layer = SparseConv2d(3, 4, 3, 0.3, padding=1, generator=torch.Generator().manual_seed(1),
                         backend="numba", dtype=torch.float64)
    layer.capture_gradient_inputs(True)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    layer(x).pow(2).sum().backward()
    w = layer.to_dense().detach().requires_grad_()
    F.conv2d(x, w, layer.bias.detach(), padding=1).pow(2).sum().backward()
    kept = layer.flat_indices()
    upd, _ = store_update(layer, 5, "gradient", torch.Generator().manual_seed(2))
    kept = kept[~torch.isin(kept, upd.dropped)]
    s = w.grad.abs().reshape(-1)
    s[kept] = float("-inf")
    assert torch.equal(upd.grown, select_topk(s, 5))
