"""Layout paths of the sparse linear kernels: the blocked transpose, the batch-major SpMM and the
layout of the input gradient, on both backends, against plain torch transposes / dense products."""
import pytest
import torch
import torch.nn.functional as F

from sparsetime.kernels import ops, pattern_from_mask, sparse_linear
from sparsetime.kernels.ops import feature_major, spmm_rowmajor


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 1), (3, 70), (67, 9), (64, 128), (130, 257)])
def test_feature_major_is_an_exact_transpose(backend, dtype, shape, monkeypatch):
    # sizes around the 8-element tiles and 64-element bands, including ragged edges; the size
    # cut-off below which torch transposes is lifted so the numba kernel sees every shape
    monkeypatch.setattr(ops, "_NUMBA_TRANSPOSE_MIN", 0)
    x = torch.arange(shape[0] * shape[1], dtype=dtype).reshape(shape)
    out = feature_major(x, backend=backend)
    assert out.shape == (shape[1], shape[0]) and out.is_contiguous()
    for i in range(shape[0]):  # element by element, independent of any transpose routine
        for j in (0, shape[1] // 2, shape[1] - 1):
            assert out[j, i].item() == i * shape[1] + j


def test_feature_major_views_and_strided_inputs(backend):
    base = torch.randn(40, 24, dtype=torch.float64)
    view = base.t()  # already feature-major: returned as is, no copy
    assert feature_major(view, backend=backend).data_ptr() == base.data_ptr()
    strided = torch.randn(10, 30, dtype=torch.float64)[:, ::3]
    assert torch.equal(feature_major(strided, backend=backend), strided.t())
    with pytest.raises(ValueError, match="2-D"):
        feature_major(torch.zeros(2, 3, 4), backend=backend)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_rows", [1, 31, 32, 33, 70])  # around the 32-row blocks
def test_spmm_rowmajor_matches_dense(backend, dtype, n_rows):
    g = torch.Generator().manual_seed(n_rows)
    mask = torch.rand(n_rows, 13, generator=g) < 0.4
    mask[0] = False  # an empty row
    w = torch.randn(n_rows, 13, generator=g, dtype=dtype) * mask
    p = pattern_from_mask(mask)
    xt = torch.randn(13, 5, generator=g, dtype=dtype)
    bias = torch.randn(n_rows, generator=g, dtype=dtype)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else {}
    y = spmm_rowmajor(p.row_ptr, p.col_idx, w[mask], xt, n_rows, bias, backend=backend)
    assert y.shape == (5, n_rows)
    torch.testing.assert_close(y, xt.t() @ w.t() + bias, **tol)
    y0 = spmm_rowmajor(p.row_ptr, p.col_idx, w[mask], xt, n_rows, backend=backend)
    torch.testing.assert_close(y0, xt.t() @ w.t(), **tol)
    if backend == "numba":
        assert y.is_contiguous()


def _layer(out_f=20, in_f=18, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(out_f, in_f, generator=g) < 0.3
    w = torch.randn(out_f, in_f, generator=g, dtype=torch.float64) * mask
    return mask, w


def test_input_gradient_comes_out_in_the_input_layout(backend):
    mask, w = _layer()
    p = pattern_from_mask(mask)
    vals = w[mask].clone().requires_grad_()
    gy = torch.randn(6, 20, dtype=torch.float64)
    expected = gy @ w  # dL/dx for y = x W^T
    x = torch.randn(6, 18, dtype=torch.float64, requires_grad=True)
    xf = torch.randn(18, 6, dtype=torch.float64).t().requires_grad_()  # feature-major view
    for inp in (x, xf):
        # autograd.grad hands back the gradient as the backward produced it (no layout copy)
        (gx,) = torch.autograd.grad(sparse_linear(inp, vals, p, backend=backend), inp, gy)
        torch.testing.assert_close(gx, expected)
        if backend == "numba":
            assert gx.stride() == inp.stride()
    # through .backward the leaf's .grad is right on both backends
    sparse_linear(x, vals, p, backend=backend).backward(gy)
    torch.testing.assert_close(x.grad, expected)


def test_sink_receives_feature_major_operands(backend):
    mask, w = _layer(seed=1)
    p = pattern_from_mask(mask)
    vals = w[mask].clone().requires_grad_()
    x = torch.randn(7, 18, dtype=torch.float64)
    gy = torch.randn(7, 20, dtype=torch.float64)
    sink: dict = {}
    sparse_linear(x, vals, p, backend=backend, sink=sink).backward(gy)
    assert sink["xt"].shape == (18, 7) and sink["gyt"].shape == (20, 7)
    torch.testing.assert_close(sink["xt"], x.t())
    torch.testing.assert_close(sink["gyt"], gy.t())
    # RigL's dense gradient score computed from the sink equals dense autograd's weight gradient
    wd = w.clone().requires_grad_()
    F.linear(x, wd).backward(gy)
    torch.testing.assert_close(sink["gyt"] @ sink["xt"].t(), wd.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mlp_chain_mixed_layouts_matches_dense(backend, dtype):
    """Linear -> ReLU -> Linear with a 3-D input: the hidden activation and its gradient travel
    feature-major, the input gradient comes back row-major."""
    m1, w1 = _layer(24, 18, seed=2)
    m2, w2 = _layer(5, 24, seed=3)
    w1, w2 = w1.to(dtype), w2.to(dtype)
    x = torch.randn(2, 9, 18, dtype=dtype)
    v1 = w1[m1].clone().requires_grad_()
    v2 = w2[m2].clone().requires_grad_()
    xs = x.clone().requires_grad_()
    h = torch.relu(sparse_linear(xs, v1, pattern_from_mask(m1), backend=backend))
    y = sparse_linear(h, v2, pattern_from_mask(m2), backend=backend)
    (y.square() * torch.arange(5, dtype=dtype)).sum().backward()
    a1, a2 = w1.clone().requires_grad_(), w2.clone().requires_grad_()
    xd = x.clone().requires_grad_()
    yd = F.linear(torch.relu(F.linear(xd, a1)), a2)
    (yd.square() * torch.arange(5, dtype=dtype)).sum().backward()
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else {}
    torch.testing.assert_close(y, yd, **tol)
    torch.testing.assert_close(xs.grad, xd.grad, **tol)
    torch.testing.assert_close(v1.grad, a1.grad[m1], **tol)
    torch.testing.assert_close(v2.grad, a2.grad[m2], **tol)
