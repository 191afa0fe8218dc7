"""Numba kernels for a direct sparse 2-D convolution (no im2col).

Activations are stored "channels, height, width, batch" (CHWN), so for stride 1 a nonzero weight
(o, c, ky, kx) contributes to a whole output row with one contiguous AXPY of length OW * N.
The weight is CSR over (out_channels, in_channels * KH * KW).

Work is split over output rows (forward, weight gradient) or input rows (input gradient) rather
than over channels: the threads then share the few activation rows that one image row needs
(3 rows per channel for a 3x3 kernel), which stay in cache, instead of each sweeping the whole
input. No two threads write the same memory; the weight gradient sums per-thread partials.
Importing this module requires numba.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _out_range(k, dil, pad, stride, size_in, size_out):  # pragma: no cover - compiled
    """[lo, hi) of output positions whose input position o*stride + k*dil - pad is inside."""
    off = k * dil - pad
    lo = 0
    if off < 0:
        lo = (-off + stride - 1) // stride
    hi = (size_in - 1 - off) // stride + 1 if size_in - 1 - off >= 0 else 0
    if hi > size_out:
        hi = size_out
    return lo, hi


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def conv2d_fwd(row_ptr, col, val, x, y, bias, has_bias, C, H, W, N, OH, OW, KH, KW,
               sh, sw, ph, pw, dh, dw):  # pragma: no cover - compiled
    """y[o, oy, ox, :] = bias[o] + sum over nonzeros (o, c, ky, kx) of v * x[c, iy, ix, :]."""
    n_out = row_ptr.shape[0] - 1
    k2 = KH * KW
    row_len = OW * N
    for oy in prange(OH):
        for o in range(n_out):
            yoff = (o * OH + oy) * row_len
            b0 = bias[o] if has_bias else 0.0
            y[yoff:yoff + row_len] = b0
            for p in range(row_ptr[o], row_ptr[o + 1]):
                cc = col[p]
                c = cc // k2
                r = cc - c * k2
                ky = r // KW
                kx = r - ky * KW
                iy = oy * sh + ky * dh - ph
                if iy < 0 or iy >= H:
                    continue
                ox0, ox1 = _out_range(kx, dw, pw, sw, W, OW)
                if ox0 >= ox1:
                    continue
                v = val[p]
                xrow = (c * H + iy) * W * N
                if sw == 1:
                    seg = (ox1 - ox0) * N
                    xs = xrow + (ox0 + kx * dw - pw) * N
                    ys = yoff + ox0 * N
                    xv = x[xs:xs + seg]
                    yv = y[ys:ys + seg]
                    for t in range(seg):
                        yv[t] += v * xv[t]
                else:
                    for ox in range(ox0, ox1):
                        xs = xrow + (ox * sw + kx * dw - pw) * N
                        ys = yoff + ox * N
                        xv = x[xs:xs + N]
                        yv = y[ys:ys + N]
                        for t in range(N):
                            yv[t] += v * xv[t]


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def conv2d_grad_input(t_row_ptr, t_col, vt, gy, gx, C, H, W, N, OH, OW, KH, KW,
                      sh, sw, ph, pw, dh, dw):  # pragma: no cover - compiled
    """gx[c, iy, ix, :] = sum over nonzeros (o, c, ky, kx) of v * gy[o, oy, ox, :]."""
    k2 = KH * KW
    in_row = W * N
    out_row = OW * N
    for iy in prange(H):
        for c in range(C):
            xoff = (c * H + iy) * in_row
            gx[xoff:xoff + in_row] = 0.0
            for ky in range(KH):
                num = iy + ph - ky * dh
                if num < 0 or num % sh != 0:
                    continue
                oy = num // sh
                if oy >= OH:
                    continue
                for kx in range(KW):
                    cc = c * k2 + ky * KW + kx
                    q0 = t_row_ptr[cc]
                    q1 = t_row_ptr[cc + 1]
                    if q0 == q1:
                        continue
                    ox0, ox1 = _out_range(kx, dw, pw, sw, W, OW)
                    if ox0 >= ox1:
                        continue
                    for q in range(q0, q1):
                        o = t_col[q]
                        v = vt[q]
                        yoff = (o * OH + oy) * out_row
                        if sw == 1:
                            seg = (ox1 - ox0) * N
                            xs = xoff + (ox0 + kx * dw - pw) * N
                            ys = yoff + ox0 * N
                            xv = gx[xs:xs + seg]
                            yv = gy[ys:ys + seg]
                            for t in range(seg):
                                xv[t] += v * yv[t]
                        else:
                            for ox in range(ox0, ox1):
                                xs = xoff + (ox * sw + kx * dw - pw) * N
                                ys = yoff + ox * N
                                xv = gx[xs:xs + N]
                                yv = gy[ys:ys + N]
                                for t in range(N):
                                    xv[t] += v * yv[t]


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def conv2d_grad_weight(row_ptr, col, x, gy, gw, C, H, W, N, OH, OW, KH, KW,
                       sh, sw, ph, pw, dh, dw, threads):  # pragma: no cover - compiled
    """gw[p] = sum over oy, ox, n of gy[o, oy, ox, n] * x[c, iy, ix, n] for nonzero p = (o, c, ky, kx).

    Output rows are split into ``min(threads, OH)`` parts with private partial sums."""
    n_out = row_ptr.shape[0] - 1
    nnz = col.shape[0]
    k2 = KH * KW
    row_len = OW * N
    zero = gw.dtype.type(0)
    parts = max(1, min(threads, OH))
    partial = np.zeros((parts, nnz), dtype=gw.dtype)
    for part in prange(parts):
        acc = partial[part]
        for oy in range(part * OH // parts, (part + 1) * OH // parts):
            for o in range(n_out):
                yoff = (o * OH + oy) * row_len
                for p in range(row_ptr[o], row_ptr[o + 1]):
                    cc = col[p]
                    c = cc // k2
                    r = cc - c * k2
                    ky = r // KW
                    kx = r - ky * KW
                    iy = oy * sh + ky * dh - ph
                    if iy < 0 or iy >= H:
                        continue
                    ox0, ox1 = _out_range(kx, dw, pw, sw, W, OW)
                    if ox0 >= ox1:
                        continue
                    xrow = (c * H + iy) * W * N
                    s = zero
                    if sw == 1:
                        seg = (ox1 - ox0) * N
                        xs = xrow + (ox0 + kx * dw - pw) * N
                        ys = yoff + ox0 * N
                        xv = x[xs:xs + seg]
                        yv = gy[ys:ys + seg]
                        for t in range(seg):
                            s += yv[t] * xv[t]
                    else:
                        for ox in range(ox0, ox1):
                            xs = xrow + (ox * sw + kx * dw - pw) * N
                            ys = yoff + ox * N
                            xv = x[xs:xs + N]
                            yv = gy[ys:ys + N]
                            for t in range(N):
                                s += yv[t] * xv[t]
                    acc[p] += s
    for p in prange(nnz):
        s = zero
        for part in range(parts):
            s += partial[part, p]
        gw[p] = s
