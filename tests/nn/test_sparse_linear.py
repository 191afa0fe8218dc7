"""SparseLinear: construction, init rescaling, conversions, state_dict and file round trips."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparsetime as st
from sparsetime.nn import SparseLinear


def test_exact_count_and_distinct_positions():
    layer = SparseLinear(30, 20, 0.137, generator=torch.Generator().manual_seed(1))
    assert layer.nnz == round(0.137 * 600) == 82
    flat = layer.flat_indices()
    assert flat.unique().numel() == 82 and int(flat.min()) >= 0 and int(flat.max()) < 600
    assert layer.density == pytest.approx(82 / 600)
    assert layer.weight_values.shape == (82,)
    assert layer.row_ptr.dtype == torch.int32 and layer.col_idx.dtype == torch.int32
    assert "density=0.1367" in repr(layer) and "nnz=82" in repr(layer)


def test_same_seed_same_layer_and_public_alias():
    a = st.nn.SparseLinear(10, 8, 0.5, generator=torch.Generator().manual_seed(3))
    b = SparseLinear(10, 8, 0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.to_dense(), b.to_dense())


def test_rescaled_init_matches_dense_variance_per_unit():
    gen = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    plain = SparseLinear(50, 40, 0.1, rescale_init=False, generator=gen())
    scaled = SparseLinear(50, 40, 0.1, rescale_init=True, generator=gen())
    dense = plain.to_dense().detach()
    fan_in = (dense != 0).sum(1)
    expected = dense * torch.sqrt(50.0 / fan_in.clamp(min=1).double()).float().unsqueeze(1)
    torch.testing.assert_close(scaled.to_dense().detach(), expected)
    assert plain.weight_values.abs().max() <= 1 / math.sqrt(50)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, "0.5", None])
def test_bad_density(bad):
    with pytest.raises(ValueError, match="density"):
        SparseLinear(4, 4, bad)


def test_bad_features():
    with pytest.raises(ValueError, match="in_features"):
        SparseLinear(0, 4, 0.5)


def test_from_dense_to_dense_and_forward_equal_linear(backend):
    torch.manual_seed(0)
    lin = nn.Linear(12, 7)
    mask = torch.rand(7, 12) < 0.4
    layer = SparseLinear.from_dense(lin, mask, backend=backend)
    assert layer.nnz == int(mask.sum())
    assert torch.equal(layer.to_dense().detach(), lin.weight.detach() * mask)
    x = torch.randn(5, 12)
    torch.testing.assert_close(layer(x), F.linear(x, lin.weight * mask, lin.bias))
    with pytest.raises(ValueError, match="shape"):
        SparseLinear.from_dense(lin, mask.t())
    with pytest.raises(ValueError, match="nn.Linear"):
        SparseLinear.from_dense(nn.Conv2d(1, 1, 1), None)


def test_from_dense_without_mask_uses_nonzeros():
    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, -3.0]]))
    layer = SparseLinear.from_dense(lin)
    assert layer.nnz == 3 and layer.bias is None
    assert layer.weight_values.tolist() == [2.0, 1.0, -3.0]
    assert layer.flat_indices().tolist() == [1, 3, 5]


def test_to_dense_is_differentiable():
    layer = SparseLinear(4, 3, 0.5, generator=torch.Generator().manual_seed(0))
    (layer.to_dense() * 2).sum().backward()
    assert torch.equal(layer.weight_values.grad, torch.full((layer.nnz,), 2.0))


def test_optimizer_state_is_nnz_sized():
    layer = SparseLinear(100, 50, 0.05, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(layer.parameters())
    layer(torch.randn(4, 100)).sum().backward()
    opt.step()
    assert opt.state[layer.weight_values]["exp_avg"].shape == (250,)


def test_state_dict_round_trip_with_different_nnz(tmp_path):
    src = SparseLinear(20, 10, 0.3, generator=torch.Generator().manual_seed(1))
    sd = src.state_dict()
    assert set(sd) == {"weight_values", "bias", "row_ptr", "col_idx"}
    path = tmp_path / "layer.pt"
    torch.save(sd, path)
    loaded = torch.load(path, weights_only=True)
    dst = SparseLinear(20, 10, 0.8, generator=torch.Generator().manual_seed(2))
    dst.load_state_dict(loaded)
    assert dst.nnz == src.nnz
    assert torch.equal(dst.to_dense(), src.to_dense())
    # the transposed index is rebuilt: gradients w.r.t. input agree
    x1 = torch.randn(3, 20, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    src(x1).sum().backward()
    dst(x2).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_load_rejects_corrupt_indices():
    layer = SparseLinear(5, 4, 0.5, generator=torch.Generator().manual_seed(1))
    sd = layer.state_dict()
    bad = dict(sd, col_idx=sd["col_idx"].clone())
    bad["col_idx"][0] = 9
    with pytest.raises(ValueError, match="col_idx"):
        layer.load_state_dict(bad)
    short = dict(sd, weight_values=sd["weight_values"][:-1])
    with pytest.raises(ValueError, match="weight_values"):
        layer.load_state_dict(short)


def test_sparse_tensor_round_trip():
    layer = SparseLinear(9, 6, 0.3, generator=torch.Generator().manual_seed(4))
    csr = layer.to_sparse_csr()
    assert csr.layout == torch.sparse_csr
    assert torch.equal(csr.to_dense(), layer.to_dense().detach())
    for w in (csr, csr.to_sparse_coo()):
        back = SparseLinear.from_sparse(w, layer.bias)
        assert torch.equal(back.to_dense(), layer.to_dense())
    with pytest.raises(ValueError, match="sparse"):
        SparseLinear.from_sparse(torch.zeros(2, 2))


def test_dtype_conversion_and_float64_forward():
    layer = SparseLinear(6, 4, 0.5, generator=torch.Generator().manual_seed(0)).double()
    x = torch.randn(2, 6, dtype=torch.float64)
    y = layer(x)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, F.linear(x, layer.to_dense(), layer.bias))
