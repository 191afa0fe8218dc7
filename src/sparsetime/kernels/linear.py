"""Autograd function of a sparse linear layer ``y = x W^T + b`` with W given as (values, CSR).

The three products are the kernels of :mod:`sparsetime.kernels.ops`: forward (SpMM), gradient
w.r.t. the input (SpMM with the cached transposed pattern) and gradient w.r.t. the values (SDDMM,
sampled on the pattern). No dense weight, dense mask or dense weight gradient is ever formed.

Layout: internally every activation is "features x batch". The output is returned as a transposed
view of that buffer, so a following element-wise op (ReLU, dropout) keeps the layout and the next
sparse layer reads it without a copy; torch ops accept such strided tensors (use ``.reshape``
rather than ``.view`` on them). The input gradient comes out in the input's own layout (a
transposed view for such a feature-major input, row-major otherwise), so autograd never copies it.
"""
from __future__ import annotations

import torch

from .csr import CSRPattern
from .layout import own
from .ops import feature_major, sddmm_t, spmm_rowmajor, spmm_t


class SparseLinearFunction(torch.autograd.Function):
    """y = x W^T + b with W = CSR(values); gradients for x, values and b."""

    @staticmethod
    def forward(ctx, x, values, bias, row_ptr, col_idx, t_row_ptr, t_col_idx, t_perm, n_out, backend,
                sink):
        in_features = x.shape[-1]
        lead = x.shape[:-1]
        x2d = x.reshape(-1, in_features)
        ctx.threads = torch.get_num_threads()  # torch reports a different count inside backward
        ctx.gx_rowmajor = not x2d.t().is_contiguous()  # give the input gradient x's layout
        xt = feature_major(x2d, backend, ctx.threads)
        yt = spmm_t(row_ptr, col_idx, values, xt, n_out, bias, backend, ctx.threads)
        ctx.save_for_backward(xt, values, row_ptr, col_idx, t_row_ptr, t_col_idx, t_perm)
        ctx.x_shape = x.shape
        ctx.has_bias = bias is not None
        ctx.backend = backend
        ctx.sink = sink
        return own(yt.t().reshape(*lead, n_out))  # not a view: in-place ops (ReLU(inplace=True)) may follow

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        xt, values, row_ptr, col_idx, t_row_ptr, t_col_idx, t_perm = ctx.saved_tensors
        gyt = feature_major(gy.reshape(-1, gy.shape[-1]), ctx.backend, ctx.threads)
        if gyt.dtype != xt.dtype:
            gyt = gyt.to(xt.dtype)
        if ctx.sink is not None:  # RigL: keep what the dense gradient score needs
            ctx.sink["xt"], ctx.sink["gyt"] = xt, gyt
        gx = gv = gb = None
        if ctx.needs_input_grad[0]:
            vt = values.detach().index_select(0, t_perm)
            args = (t_row_ptr, t_col_idx, vt, gyt, xt.shape[0], None, ctx.backend, ctx.threads)
            gx = spmm_rowmajor(*args) if ctx.gx_rowmajor else spmm_t(*args).t()
            gx = gx.reshape(ctx.x_shape)
        want_gb = ctx.has_bias and ctx.needs_input_grad[2]
        if ctx.needs_input_grad[1]:
            gv = sddmm_t(row_ptr, col_idx, gyt, xt, ctx.backend, ctx.threads, row_sums=want_gb)
            if want_gb:
                gv, gb = gv
            gv = gv.to(values.dtype)
        elif want_gb:
            gb = gyt.sum(1)
        return gx, gv, gb, None, None, None, None, None, None, None, None


def sparse_linear(x: torch.Tensor, values: torch.Tensor, pattern: CSRPattern,
                  bias: torch.Tensor | None = None, backend: str | None = None,
                  sink: dict | None = None) -> torch.Tensor:
    """``x @ W.T + bias`` for W of shape ``pattern.shape`` with entries ``values`` in CSR order.

    ``x`` has shape (..., in_features); ``backend`` None picks numba when possible, else torch.
    ``sink``: if a dict, the backward stores the layer input ``"xt"`` (in, batch) and output
    gradient ``"gyt"`` (out, batch) in it, for RigL's dense gradient score.
    """
    out_features, in_features = pattern.shape
    if x.shape[-1] != in_features:
        raise ValueError(f"input has {x.shape[-1]} features, the sparse weight expects {in_features}")
    if values.dim() != 1 or values.numel() != pattern.nnz:
        raise ValueError(f"values must be 1-D with nnz={pattern.nnz} entries, got {tuple(values.shape)}")
    if x.dtype != values.dtype:
        x = x.to(values.dtype)
    return SparseLinearFunction.apply(x, values, bias, pattern.row_ptr, pattern.col_idx,
                                      pattern.t_row_ptr, pattern.t_col_idx, pattern.t_perm,
                                      out_features, backend, sink)
