"""Sparse linear products (forward, grad input, SDDMM grad values) against dense autograd."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetime.kernels import pattern_from_mask, sddmm_t, sparse_linear, spmm_t
from sparsetime.kernels import backend as backend_mod


def _case(out_f, in_f, density, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(out_f, in_f, generator=g) < density
    w = torch.randn(out_f, in_f, generator=g, dtype=dtype) * mask
    return mask, w


def _check(mask, w, x, bias, backend, gy=None, atol=1e-10):
    """Compare y, dL/dx, dL/dvalues, dL/dbias with F.linear on the dense masked weight."""
    pattern = pattern_from_mask(mask)
    vals = w[mask].clone().requires_grad_()
    b = bias.clone().requires_grad_() if bias is not None else None
    xs = x.detach().clone().requires_grad_()
    y = sparse_linear(xs, vals, pattern, b, backend=backend)
    gy = torch.randn(y.shape, dtype=y.dtype) if gy is None else gy
    y.backward(gy)
    wd = w.clone().requires_grad_()
    bd = bias.clone().requires_grad_() if bias is not None else None
    xd = x.detach().clone().requires_grad_()
    yd = F.linear(xd, wd, bd)
    yd.backward(gy)
    assert y.shape == yd.shape
    torch.testing.assert_close(y, yd, atol=atol, rtol=1e-6)
    torch.testing.assert_close(xs.grad, xd.grad, atol=atol, rtol=1e-6)
    torch.testing.assert_close(vals.grad, wd.grad[mask], atol=atol, rtol=1e-6)
    if bias is not None:
        torch.testing.assert_close(b.grad, bd.grad, atol=atol, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_layer_with_empty_rows_and_columns(backend, dtype):
    mask, w = _case(23, 41, 0.2, dtype)
    mask[5] = False
    mask[:, 7] = False
    mask[:, -1] = False
    w = w * mask
    x = torch.randn(9, 41, dtype=dtype)
    atol = 1e-5 if dtype == torch.float32 else 1e-10
    _check(mask, w, x, torch.randn(23, dtype=dtype), backend, atol=atol)


def test_single_nonzero_and_batch_one(backend):
    mask = torch.zeros(6, 5, dtype=torch.bool)
    mask[4, 2] = True
    w = torch.zeros(6, 5, dtype=torch.float64)
    w[4, 2] = -1.5
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]], dtype=torch.float64)
    gy = torch.arange(6, dtype=torch.float64).reshape(1, 6)
    _check(mask, w, x, None, backend, gy=gy)
    # hand-computed: y[0,4] = -1.5 * 3 = -4.5; dvalue = gy[0,4] * x[0,2] = 4 * 3 = 12
    vals = torch.tensor([-1.5], dtype=torch.float64, requires_grad=True)
    y = sparse_linear(x, vals, pattern_from_mask(mask), backend=backend)
    assert y[0, 4].item() == -4.5 and y.abs().sum().item() == 4.5
    y.backward(gy)
    assert vals.grad.item() == 12.0


def test_empty_pattern(backend):
    mask = torch.zeros(4, 3, dtype=torch.bool)
    x = torch.randn(2, 3, dtype=torch.float64)
    bias = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    _check(mask, torch.zeros(4, 3, dtype=torch.float64), x, bias, backend)


def test_non_contiguous_and_batched_inputs(backend):
    mask, w = _case(12, 10, 0.3, seed=1)
    base = torch.randn(10, 14, dtype=torch.float64)
    _check(mask, w, base.t(), torch.randn(12, dtype=torch.float64), backend)  # transposed view
    wide = torch.randn(8, 30, dtype=torch.float64)
    _check(mask, w, wide[:, ::3], None, backend)  # strided slice
    _check(mask, w, torch.randn(3, 4, 10, dtype=torch.float64), None, backend)  # (N, L, in)


def test_chained_layers_keep_transposed_layout(backend):
    """Output of one layer (a transposed view) feeds the next without changing results."""
    m1, w1 = _case(16, 12, 0.4, seed=2)
    m2, w2 = _case(5, 16, 0.4, seed=3)
    x = torch.randn(7, 12, dtype=torch.float64)
    v1 = w1[m1].clone().requires_grad_()
    v2 = w2[m2].clone().requires_grad_()
    h = torch.relu(sparse_linear(x, v1, pattern_from_mask(m1), backend=backend))
    y = sparse_linear(h, v2, pattern_from_mask(m2), backend=backend)
    (y ** 2).sum().backward()
    a1 = w1.clone().requires_grad_()
    a2 = w2.clone().requires_grad_()
    yd = F.linear(torch.relu(F.linear(x, a1)), a2)
    (yd ** 2).sum().backward()
    torch.testing.assert_close(y, yd)
    torch.testing.assert_close(v1.grad, a1.grad[m1])
    torch.testing.assert_close(v2.grad, a2.grad[m2])


def test_gradcheck(backend):
    mask, w = _case(5, 4, 0.5, seed=4)
    pattern = pattern_from_mask(mask)
    vals = w[mask].clone().requires_grad_()
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, v, b: sparse_linear(x, v, pattern, b, backend=backend),
                                    (x, vals, b))


@settings(max_examples=15, deadline=None)
@given(out_f=st.integers(1, 17), in_f=st.integers(1, 17), batch=st.integers(1, 9),
       density=st.floats(0.0, 1.0), seed=st.integers(0, 1000), bias=st.booleans())
def test_property_matches_dense(out_f, in_f, batch, density, seed, bias):
    mask, w = _case(out_f, in_f, density, seed=seed)
    x = torch.randn(batch, in_f, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    b = torch.randn(out_f, dtype=torch.float64) if bias else None
    for be in ["torch"] + (["numba"] if backend_mod.numba_available() else []):
        _check(mask, w, x, b, be)


def test_raw_products_against_dense(backend):
    mask, w = _case(9, 11, 0.3, seed=5)
    p = pattern_from_mask(mask)
    xt = torch.randn(11, 6, dtype=torch.float64)
    torch.testing.assert_close(spmm_t(p.row_ptr, p.col_idx, w[mask], xt, 9, backend=backend), w @ xt)
    at = torch.randn(9, 6, dtype=torch.float64)
    torch.testing.assert_close(sddmm_t(p.row_ptr, p.col_idx, at, xt, backend=backend), (at @ xt.t())[mask])
    # the transposed pattern computes W^T @ gy
    vt = w[mask][p.t_perm.long()]
    torch.testing.assert_close(spmm_t(p.t_row_ptr, p.t_col_idx, vt, at, 11, backend=backend), w.t() @ at)


def test_bad_input_raises_value_error():
    mask, w = _case(4, 3, 0.5)
    p = pattern_from_mask(mask)
    with pytest.raises(ValueError, match="features"):
        sparse_linear(torch.randn(2, 5, dtype=torch.float64), w[mask], p)
    with pytest.raises(ValueError, match="nnz"):
        sparse_linear(torch.randn(2, 3, dtype=torch.float64), torch.zeros(p.nnz + 1, dtype=torch.float64), p)
    with pytest.raises(ValueError, match="allowed"):
        sparse_linear(torch.randn(2, 3, dtype=torch.float64), w[mask], p, backend="cuda")


def test_env_var_disables_numba(monkeypatch):
    monkeypatch.setenv("SPARSETIME_DISABLE_NUMBA", "1")
    x = torch.randn(2, 3)
    assert backend_mod.numba_kernels() is None
    assert backend_mod.resolve_backend(x) == "torch"
    with pytest.raises(ValueError, match="numba"):
        spmm_t(torch.zeros(2, dtype=torch.int32), torch.zeros(0, dtype=torch.int32), torch.zeros(0),
               x.t().contiguous(), 1, backend="numba")
    monkeypatch.delenv("SPARSETIME_DISABLE_NUMBA")
    assert backend_mod.resolve_backend(x) == ("numba" if backend_mod.numba_available() else "torch")
    assert backend_mod.resolve_backend(x.half()) == "torch"


def test_set_backend_validates_and_forces_torch():
    with pytest.raises(ValueError, match="allowed"):
        backend_mod.set_backend("gpu")
    backend_mod.set_backend("torch")
    try:
        assert backend_mod.resolve_backend(torch.randn(2)) == "torch"
    finally:
        backend_mod.set_backend("auto")


def test_everything_works_without_numba_installed():
    """A fresh interpreter where ``import numba`` fails: the torch fallback must carry on."""
    import subprocess
    import sys
    code = (
        "import sys; sys.modules['numba'] = None\n"
        "import torch, torch.nn.functional as F\n"
        "from sparsetime.kernels import numba_available\n"
        "from sparsetime.nn import SparseLinear, SparseConv2d\n"
        "assert not numba_available()\n"
        "l = SparseLinear(6, 4, 0.5)\n"
        "x = torch.randn(3, 6, requires_grad=True)\n"
        "l(x).sum().backward()\n"
        "assert torch.allclose(x.grad, l.to_dense().sum(0).expand(3, 6).detach(), atol=1e-6)\n"
        "c = SparseConv2d(2, 3, 3, 0.5, padding=1)\n"
        "z = torch.randn(1, 2, 5, 5)\n"
        "assert torch.allclose(c(z), F.conv2d(z, c.to_dense(), c.bias, padding=1), atol=1e-6)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
