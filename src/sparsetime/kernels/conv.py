"""Sparse 2-D convolution with the weight given as (values, CSR over (out, in * KH * KW)).

With numba: a direct sparse convolution (:mod:`sparsetime.kernels._numba_conv`) for forward,
input gradient and weight gradient sampled on the pattern; activations are kept in
"channels, height, width, batch" memory and the output is returned as a permuted view of it, so
consecutive sparse convolutions (with element-wise ops between) exchange tensors without copies.
Without numba (or off CPU) the fallback scatters the values into a dense weight and calls
``F.conv2d``: correct everywhere, but not faster than dense (im2col + CSR was measured slower).
The same path serves the calls that it runs faster than the kernels (:data:`DENSE_SMALL_CALLS`):
small batches on small maps, such as inference one image at a time.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .backend import numba_kernels, resolve_backend, sync_threads
from .csr import CSRPattern, flat_indices
from .heuristics import dense_conv_call_faster
from .layout import own, to_chwn


def _pair(v: int | tuple[int, int], name: str) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or not all(isinstance(i, int) for i in t):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return t[0], t[1]


def _chwn(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> contiguous (C, H, W, N); free when x is already such a permuted view."""
    return to_chwn(x).permute(1, 2, 3, 0)


def out_size(size: int, k: int, stride: int, pad: int, dil: int) -> int:
    """Output length of a convolution along one dimension."""
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


# input channels per block in the numba kernels: KH rows of OW * N values of each should stay in L2
L2_BLOCK_BYTES = 384 * 1024
#: ... unless a block would then hold fewer nonzeros of a weight row than this, on average: the
#: kernels take a row's nonzeros in a block four at a time, and each one left over costs a read and
#: a write of the whole output row. At low density that outweighs the L2 misses (fwd + weight
#: gradient, 16 vs 0 here: 1.15x / 1.31x at density 0.02 / 0.01 on 128 channels at 16x16, batch 128;
#: 1.06x / 1.12x on 256 at 8x8; no change at 0.05 and above, 48 was 4% slower there)
MIN_BLOCK_NONZEROS = 16


def channel_block(kh: int, width: int, batch: int, itemsize: int, channels: int,
                  nonzeros_per_channel: float = 0.0) -> int:
    """Input channels per block: as many as have ``kh`` activation rows of ``width * batch`` values
    in :data:`L2_BLOCK_BYTES`, raised so that a weight row with ``nonzeros_per_channel`` nonzeros in
    each input channel (on average: nnz / (out * in)) has :data:`MIN_BLOCK_NONZEROS` in a block."""
    fit = max(1, min(channels, L2_BLOCK_BYTES // max(1, kh * width * batch * itemsize)))
    if nonzeros_per_channel > 0:
        fit = max(fit, math.ceil(MIN_BLOCK_NONZEROS / nonzeros_per_channel))
    return min(channels, fit)


#: whether calls with backend None / "auto" take the dense-scatter path where
#: :func:`~sparsetime.kernels.heuristics.dense_conv_call_faster` says it is faster (small batches on
#: small maps); the results agree to float rounding. False: numba whenever it can run.
DENSE_SMALL_CALLS = True


def _conv_mod():
    from . import _numba_conv
    return _numba_conv


def _decoded(kernels, col_idx: torch.Tensor, kh: int, kw: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``col_idx`` split into input channel and ky * 65536 + kx (int32 each), for the kernels."""
    if kh >= 32768 or kw >= 65536:
        raise ValueError(f"kernel size {kh}x{kw} is too large for the sparse convolution kernels (< 32768 x 65536)")
    chan = torch.empty_like(col_idx, dtype=torch.int32)
    kyx = torch.empty_like(col_idx, dtype=torch.int32)
    kernels.decode_pattern(col_idx.numpy(), kh, kw, chan.numpy(), kyx.numpy())
    return chan, kyx


class SparseConv2dFunction(torch.autograd.Function):
    """Direct sparse convolution (numba); gradients for input, values and bias."""

    @staticmethod
    def forward(ctx, x, values, bias, row_ptr, col_idx, t_row_ptr, t_col_idx, t_perm, weight_shape,
                geometry, sink):
        k = _conv_mod()
        n_out, c_in, kh, kw = weight_shape
        (sh, sw), (ph, pw), (dh, dw) = geometry
        n, _, h, w = x.shape
        oh, ow = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)
        ctx.threads = torch.get_num_threads()
        sync_threads(ctx.threads, col_idx.numel() * oh * ow * n)
        xc = _chwn(x.detach())
        y = torch.empty((n_out, oh, ow, n), dtype=x.dtype)
        b = bias.detach().contiguous().to(x.dtype).numpy() if bias is not None else numba_kernels().empty_bias(
            xc.numpy().dtype)
        dims = (c_in, h, w, n, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw)
        ctx.cblock = channel_block(kh, w, n, xc.element_size(), c_in, col_idx.numel() / max(1, n_out * c_in))
        chan, kyx = _decoded(k, col_idx, kh, kw)
        k.conv2d_fwd(row_ptr.numpy(), col_idx.numpy(), values.detach().contiguous().numpy(),
                     xc.view(-1).numpy(), y.view(-1).numpy(), b, bias is not None, *dims, ctx.cblock,
                     chan.numpy(), kyx.numpy())
        ctx.save_for_backward(xc, values, row_ptr, col_idx, t_row_ptr, t_col_idx, t_perm, chan, kyx)
        ctx.dims, ctx.has_bias, ctx.sink = dims, bias is not None, sink
        return own(y.permute(3, 0, 1, 2))  # not a view: in-place ops (ReLU(inplace=True)) may follow

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        k = _conv_mod()
        xc, values, row_ptr, col_idx, t_row_ptr, t_col_idx, t_perm, chan, kyx = ctx.saved_tensors
        c_in, h, w, n, oh, ow = ctx.dims[:6]
        gyc = _chwn(gy).to(xc.dtype)
        if ctx.sink is not None:
            ctx.sink["xc"], ctx.sink["gyc"] = xc, gyc
        sync_threads(ctx.threads, col_idx.numel() * oh * ow * n)
        gx = gv = gb = None
        if ctx.needs_input_grad[0]:
            vt = values.detach().index_select(0, t_perm).contiguous()
            gxc = torch.empty((c_in, h, w, n), dtype=xc.dtype)
            k.conv2d_grad_input(t_row_ptr.numpy(), t_col_idx.numpy(), vt.numpy(), gyc.view(-1).numpy(),
                                gxc.view(-1).numpy(), *ctx.dims)
            gx = gxc.permute(3, 0, 1, 2)
        if ctx.needs_input_grad[1]:
            gv = torch.empty(col_idx.numel(), dtype=xc.dtype)
            import numba

            k.conv2d_grad_weight(row_ptr.numpy(), col_idx.numpy(), xc.view(-1).numpy(),
                                 gyc.view(-1).numpy(), gv.numpy(), *ctx.dims, numba.get_num_threads(), ctx.cblock,
                                 chan.numpy(), kyx.numpy())
            gv = gv.to(values.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gyc.sum((1, 2, 3))
        return gx, gv, gb, None, None, None, None, None, None, None, None


def sparse_conv2d(x: torch.Tensor, values: torch.Tensor, pattern: CSRPattern,
                  weight_shape: tuple[int, int, int, int], bias: torch.Tensor | None = None,
                  stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                  dilation: int | tuple[int, int] = 1, backend: str | None = None,
                  sink: dict | None = None) -> torch.Tensor:
    """``F.conv2d(x, W, bias, stride, padding, dilation)`` for a sparse W given as CSR values.

    ``x``: (N, C, H, W). ``backend`` None: numba when available and x is a CPU float32/64
    tensor, else the dense-scatter torch fallback, which also serves the calls where it is faster
    (see :data:`DENSE_SMALL_CALLS`). ``sink``: as in :func:`sparse_linear`
    (stores ``"xc"`` and ``"gyc"`` in CHWN layout for RigL growth, on both paths).
    """
    if len(weight_shape) != 4:
        raise ValueError(f"weight_shape must be (out, in, kh, kw), got {tuple(weight_shape)}")
    geometry = (_pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation"))
    if min(geometry[0] + geometry[2]) < 1 or min(geometry[1]) < 0:
        raise ValueError(f"stride and dilation must be >= 1 and padding >= 0, got {geometry}")
    if x.dim() != 4 or x.shape[1] != weight_shape[1]:
        raise ValueError(f"input must be (N, {weight_shape[1]}, H, W), got shape {tuple(x.shape)}")
    if values.dim() != 1 or values.numel() != pattern.nnz:
        raise ValueError(f"values must be 1-D with nnz={pattern.nnz} entries, got {tuple(values.shape)}")
    if x.dtype != values.dtype:
        x = x.to(values.dtype)
    if backend not in (None, "auto", "numba", "torch"):
        raise ValueError(f"unknown backend {backend!r}; allowed: None/'auto', 'numba', 'torch'")
    auto = resolve_backend(values, x)
    if backend == "numba" and auto != "numba":
        raise ValueError("backend 'numba' needs numba installed and enabled, CPU tensors and "
                         "float32/float64 data; allowed here: 'torch' or None (auto)")
    if auto == "numba" and backend in (None, "auto") and DENSE_SMALL_CALLS:
        (sh, sw), (ph, pw), (dh, dw) = geometry
        out_hw = (out_size(x.shape[2], weight_shape[2], sh, ph, dh), out_size(x.shape[3], weight_shape[3], sw, pw, dw))
        chwn = x.permute(1, 2, 3, 0).is_contiguous() and not x.is_contiguous()
        if dense_conv_call_faster(pattern.nnz, weight_shape, x.shape, out_hw, chwn):
            auto = "torch"
    if backend == "torch" or auto == "torch":
        flat = flat_indices(pattern.row_ptr, pattern.col_idx, pattern.shape[1])
        dense = values.new_zeros(pattern.shape[0] * pattern.shape[1]).index_put((flat,), values)
        y = F.conv2d(x, dense.view(weight_shape), bias, *geometry)
        if sink is not None and y.requires_grad:  # RigL's gradient score: both tensors, in backward, as numba's
            xc = _chwn(x.detach())

            def capture(gy: torch.Tensor) -> None:
                sink["xc"], sink["gyc"] = xc, _chwn(gy.detach())
            y.register_hook(capture)
        return y
    return SparseConv2dFunction.apply(x, values, bias, pattern.row_ptr, pattern.col_idx,
                                      pattern.t_row_ptr, pattern.t_col_idx, pattern.t_perm,
                                      tuple(weight_shape), geometry, sink)
