"""Numba kernels for a direct sparse 2-D convolution (no im2col).

Activations are stored "channels, height, width, batch" (CHWN), so for stride 1 a nonzero weight
(o, c, ky, kx) contributes to a whole output row with one contiguous AXPY of length OW * N.
The weight is CSR over (out_channels, in_channels * KH * KW).

Work is split over output rows (forward, weight gradient) or input rows (input gradient) rather
than over channels: the threads then share the few activation rows that one image row needs
(3 rows per channel for a 3x3 kernel), which stay in cache, instead of each sweeping the whole
input. No two threads write the same memory; the weight gradient sums per-thread partials.

The inner loops are register-blocked four nonzeros at a time: the four terms that land on the same
output row segment are summed before it is stored (forward, input gradient), or one gradient row
is loaded for four dot products (weight gradient), so each row segment is read and written once
per four nonzeros instead of once per nonzero. The four segments differ at most in their first and
last columns (padding): the common range is blocked and the few border columns are done one
nonzero at a time. The forward and the weight gradient take the input channels in blocks
(``cblock``, sized by the caller so that a block's activation rows fit in L2, or larger at low
density, so that a block still holds enough nonzeros of each weight row to group them by four): every output channel
reads the block's rows before the next block is touched, instead of streaming all of x from L3
once per output channel.
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


@njit(cache=True)
def _max_row(row_ptr):  # pragma: no cover - compiled
    m = 0
    for i in range(row_ptr.shape[0] - 1):
        m = max(m, row_ptr[i + 1] - row_ptr[i])
    return m


@njit(cache=True, inline="always")
def _axpy_cols(v, src, s0, s_step, dst, d0, d_step, c0, c1, N):  # pragma: no cover - compiled
    """dst[d0 + ox*d_step + t] += v * src[s0 + ox*s_step + t] for ox in [c0, c1), t < N.

    The steps are N for a dense run of columns and stride * N on the strided side of a strided
    convolution (x in the forward, gx in the input gradient)."""
    if s_step == N and d_step == N:
        n = (c1 - c0) * N
        sv = src[s0 + c0 * N:s0 + c0 * N + n]
        dv = dst[d0 + c0 * N:d0 + c0 * N + n]
        for t in range(n):
            dv[t] += v * sv[t]
    else:
        for ox in range(c0, c1):
            a = s0 + ox * s_step
            b = d0 + ox * d_step
            sv = src[a:a + N]
            dv = dst[b:b + N]
            for t in range(N):
                dv[t] += v * sv[t]


@njit(cache=True, inline="always")
def _axpy4(v0, v1, v2, v3, src, a0, a1, a2, a3, s_step, dst, d0, d_step, c0, c1, N):  # pragma: no cover
    """dst[d0 + ox*d_step + t] += sum over j < 4 of vj * src[aj + ox*s_step + t], ox in [c0, c1): the
    four terms are summed in registers and the destination is read and written once."""
    if s_step == N and d_step == N:
        u0, u1 = c0 * N, c1 * N
        dv = dst[d0 + u0:d0 + u1]
        x0, x1 = src[a0 + u0:a0 + u1], src[a1 + u0:a1 + u1]
        x2, x3 = src[a2 + u0:a2 + u1], src[a3 + u0:a3 + u1]
        for t in range(u1 - u0):
            dv[t] += v0 * x0[t] + v1 * x1[t] + v2 * x2[t] + v3 * x3[t]
    else:
        for ox in range(c0, c1):
            q = ox * s_step
            d = d0 + ox * d_step
            dv = dst[d:d + N]
            x0, x1 = src[a0 + q:a0 + q + N], src[a1 + q:a1 + q + N]
            x2, x3 = src[a2 + q:a2 + q + N], src[a3 + q:a3 + q + N]
            for t in range(N):
                dv[t] += v0 * x0[t] + v1 * x1[t] + v2 * x2[t] + v3 * x3[t]


@njit(cache=True, inline="always")
def _dot_cols(src, s0, other, d0, c0, c1, sw, N):  # pragma: no cover - compiled
    """sum of other[d0 + ox*N + t] * src[s0 + ox*sw*N + t] for ox in [c0, c1), t < N."""
    s = src.dtype.type(0)
    if sw == 1:
        n = (c1 - c0) * N
        sv = src[s0 + c0 * N:s0 + c0 * N + n]
        ov = other[d0 + c0 * N:d0 + c0 * N + n]
        for t in range(n):
            s += ov[t] * sv[t]
    else:
        for ox in range(c0, c1):
            a = s0 + ox * sw * N
            b = d0 + ox * N
            sv = src[a:a + N]
            ov = other[b:b + N]
            for t in range(N):
                s += ov[t] * sv[t]
    return s


@njit(parallel=True, cache=True, nogil=True)
def decode_pattern(col, KH, KW, chan, kyx):  # pragma: no cover - compiled
    """Split each column index c * KH * KW + ky * KW + kx into ``chan`` = c and ``kyx`` =
    ky * 65536 + kx, once per call: the row gathers below then run without integer divisions,
    which cost more than the multiply-adds on small maps and batches (one gather per nonzero
    and output row)."""
    k2 = KH * KW
    for p in prange(col.shape[0]):
        cc = col[p]
        c = cc // k2
        r = cc - c * k2
        ky = r // KW
        chan[p] = c
        kyx[p] = ky * 65536 + (r - ky * KW)


@njit(cache=True, inline="always")
def _gather_row(chan, kyx, p0, p1, c_end, oy, H, WN, N, sh, ph, pw, dh, dw, col_lo, col_hi, idx, base, lo,
                hi):  # pragma: no cover - compiled
    """The nonzeros p0.. of a weight row with input channel < ``c_end`` that reach output row ``oy``:
    their index, the offset in x of output column 0 (``base``, may point before the row: only
    [lo, hi) is read) and their column range (``col_lo/hi[kx]``, from :func:`_out_range`).
    Returns (count, the first nonzero not taken)."""
    m = 0
    p = p0
    while p < p1:
        c = chan[p]
        if c >= c_end:
            break
        k = kyx[p]
        ky = k >> 16
        kx = k & 65535
        iy = oy * sh + ky * dh - ph
        p += 1
        if iy < 0 or iy >= H:
            continue
        ox0 = col_lo[kx]
        ox1 = col_hi[kx]
        if ox0 >= ox1:
            continue
        idx[m] = p - 1
        base[m] = (c * H + iy) * WN + (kx * dw - pw) * N
        lo[m] = ox0
        hi[m] = ox1
        m += 1
    return m, p


@njit(cache=True, inline="always")
def _column_ranges(KW, dw, pw, sw, W, OW):  # pragma: no cover - compiled
    """[lo[kx], hi[kx]) of output columns that kernel column kx reaches, for every kx."""
    lo = np.empty(KW, dtype=np.int64)
    hi = np.empty(KW, dtype=np.int64)
    for kx in range(KW):
        lo[kx], hi[kx] = _out_range(kx, dw, pw, sw, W, OW)
    return lo, hi


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def conv2d_fwd(row_ptr, col, val, x, y, bias, has_bias, C, H, W, N, OH, OW, KH, KW,
               sh, sw, ph, pw, dh, dw, cblock, chan, kyx):  # pragma: no cover - compiled
    """y[o, oy, ox, :] = bias[o] + sum over nonzeros (o, c, ky, kx) of v * x[c, iy, ix, :].

    Input channels are taken ``cblock`` at a time (their rows then stay in L2 while every output
    channel reads them), each output row visited once per block. ``chan``, ``kyx``: ``col`` decoded
    by :func:`decode_pattern`."""
    n_out = row_ptr.shape[0] - 1
    row_len = OW * N
    width = max(1, _max_row(row_ptr))
    col_lo, col_hi = _column_ranges(KW, dw, pw, sw, W, OW)
    for oy in prange(OH):
        idx = np.empty(width, dtype=np.int64)
        base = np.empty(width, dtype=np.int64)
        lo = np.empty(width, dtype=np.int64)
        hi = np.empty(width, dtype=np.int64)
        cursor = row_ptr[:n_out].copy()
        for o in range(n_out):
            yoff = (o * OH + oy) * row_len
            b0 = bias[o] if has_bias else 0.0
            y[yoff:yoff + row_len] = b0
        for cb in range(0, C, cblock):
            for o in range(n_out):
                yoff = (o * OH + oy) * row_len
                m, cursor[o] = _gather_row(chan, kyx, cursor[o], row_ptr[o + 1], cb + cblock, oy, H, W * N, N,
                                           sh, ph, pw, dh, dw, col_lo, col_hi, idx, base, lo, hi)
                i = 0
                while i + 4 <= m:
                    c0 = max(max(lo[i], lo[i + 1]), max(lo[i + 2], lo[i + 3]))
                    c1 = min(min(hi[i], hi[i + 1]), min(hi[i + 2], hi[i + 3]))
                    if c0 < c1:
                        _axpy4(val[idx[i]], val[idx[i + 1]], val[idx[i + 2]], val[idx[i + 3]], x, base[i], base[i + 1],
                               base[i + 2], base[i + 3], sw * N, y, yoff, N, c0, c1, N)
                        for j in range(i, i + 4):
                            _axpy_cols(val[idx[j]], x, base[j], sw * N, y, yoff, N, lo[j], c0, N)
                            _axpy_cols(val[idx[j]], x, base[j], sw * N, y, yoff, N, c1, hi[j], N)
                    else:
                        for j in range(i, i + 4):
                            _axpy_cols(val[idx[j]], x, base[j], sw * N, y, yoff, N, lo[j], hi[j], N)
                    i += 4
                for j in range(i, m):
                    _axpy_cols(val[idx[j]], x, base[j], sw * N, y, yoff, N, lo[j], hi[j], N)


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def conv2d_grad_input(t_row_ptr, t_col, vt, gy, gx, C, H, W, N, OH, OW, KH, KW,
                      sh, sw, ph, pw, dh, dw):  # pragma: no cover - compiled
    """gx[c, iy, ix, :] = sum over nonzeros (o, c, ky, kx) of v * gy[o, oy, ox, :].

    For one input row (c, iy) and one kernel column kx every term lands on the same segment of gx,
    whatever o and ky: those terms are gathered and summed four at a time."""
    k2 = KH * KW
    in_row = W * N
    out_row = OW * N
    width = max(1, _max_row(t_row_ptr)) * KH
    for iy in prange(H):
        src = np.empty(width, dtype=np.int64)
        vv = np.empty(width, dtype=vt.dtype)
        for c in range(C):
            xoff = (c * H + iy) * in_row
            gx[xoff:xoff + in_row] = 0.0
            for kx in range(KW):
                ox0, ox1 = _out_range(kx, dw, pw, sw, W, OW)
                if ox0 >= ox1:
                    continue
                m = 0
                for ky in range(KH):
                    num = iy + ph - ky * dh
                    if num < 0 or num % sh != 0:
                        continue
                    oy = num // sh
                    if oy >= OH:
                        continue
                    cc = c * k2 + ky * KW + kx
                    for q in range(t_row_ptr[cc], t_row_ptr[cc + 1]):
                        src[m] = (t_col[q] * OH + oy) * out_row
                        vv[m] = vt[q]
                        m += 1
                # gx[xoff + (ox*sw + kx*dw - pw)*N + t] += v * gy[src + ox*N + t]
                dst = xoff + (kx * dw - pw) * N
                i = 0
                while i + 4 <= m:
                    _axpy4(vv[i], vv[i + 1], vv[i + 2], vv[i + 3], gy, src[i], src[i + 1], src[i + 2], src[i + 3], N,
                           gx, dst, sw * N, ox0, ox1, N)
                    i += 4
                for j in range(i, m):
                    _axpy_cols(vv[j], gy, src[j], N, gx, dst, sw * N, ox0, ox1, N)


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def conv2d_grad_weight(row_ptr, col, x, gy, gw, C, H, W, N, OH, OW, KH, KW,
                       sh, sw, ph, pw, dh, dw, threads, cblock, chan, kyx):  # pragma: no cover - compiled
    """gw[p] = sum over oy, ox, n of gy[o, oy, ox, n] * x[c, iy, ix, n] for nonzero p = (o, c, ky, kx).

    Output rows are split into ``min(threads, OH)`` parts with private partial sums; input channels
    are taken ``cblock`` at a time, as in :func:`conv2d_fwd` (``chan``, ``kyx`` as there)."""
    n_out = row_ptr.shape[0] - 1
    nnz = col.shape[0]
    col_lo, col_hi = _column_ranges(KW, dw, pw, sw, W, OW)
    row_len = OW * N
    zero = gw.dtype.type(0)
    parts = max(1, min(threads, OH))
    partial = np.zeros((parts, nnz), dtype=gw.dtype)
    width = max(1, _max_row(row_ptr))
    for part in prange(parts):
        acc = partial[part]
        idx = np.empty(width, dtype=np.int64)
        base = np.empty(width, dtype=np.int64)
        lo = np.empty(width, dtype=np.int64)
        hi = np.empty(width, dtype=np.int64)
        cursor = np.empty(n_out, dtype=row_ptr.dtype)
        for oy in range(part * OH // parts, (part + 1) * OH // parts):
            cursor[:] = row_ptr[:n_out]
            for cb in range(0, C, cblock):
                for o in range(n_out):
                    yoff = (o * OH + oy) * row_len
                    m, cursor[o] = _gather_row(chan, kyx, cursor[o], row_ptr[o + 1], cb + cblock, oy, H, W * N, N,
                                               sh, ph, pw, dh, dw, col_lo, col_hi, idx, base, lo, hi)
                    i = 0
                    while i + 4 <= m:
                        c0 = max(max(lo[i], lo[i + 1]), max(lo[i + 2], lo[i + 3]))
                        c1 = min(min(hi[i], hi[i + 1]), min(hi[i + 2], hi[i + 3]))
                        if c0 < c1:
                            _dot4(x, base, i, gy, yoff, c0, c1, sw, N, idx, acc)
                            for j in range(i, i + 4):
                                acc[idx[j]] += (_dot_cols(x, base[j], gy, yoff, lo[j], c0, sw, N)
                                                + _dot_cols(x, base[j], gy, yoff, c1, hi[j], sw, N))
                        else:
                            for j in range(i, i + 4):
                                acc[idx[j]] += _dot_cols(x, base[j], gy, yoff, lo[j], hi[j], sw, N)
                        i += 4
                    for j in range(i, m):
                        acc[idx[j]] += _dot_cols(x, base[j], gy, yoff, lo[j], hi[j], sw, N)
    for p in prange(nnz):
        s = zero
        for part in range(parts):
            s += partial[part, p]
        gw[p] = s


@njit(cache=True, inline="always")
def _dot4(x, base, i, gy, yoff, c0, c1, sw, N, idx, acc):  # pragma: no cover - compiled
    """acc[idx[i + j]] += the dot products of one gradient segment with four x segments, j < 4."""
    a0, a1, a2, a3 = base[i], base[i + 1], base[i + 2], base[i + 3]
    zero = acc.dtype.type(0)
    s0 = s1 = s2 = s3 = zero
    if sw == 1:
        u0, u1 = c0 * N, c1 * N
        gv = gy[yoff + u0:yoff + u1]
        x0, x1 = x[a0 + u0:a0 + u1], x[a1 + u0:a1 + u1]
        x2, x3 = x[a2 + u0:a2 + u1], x[a3 + u0:a3 + u1]
        for t in range(u1 - u0):
            g = gv[t]
            s0 += g * x0[t]
            s1 += g * x1[t]
            s2 += g * x2[t]
            s3 += g * x3[t]
    else:
        for ox in range(c0, c1):
            q = ox * sw * N
            d = yoff + ox * N
            gv = gy[d:d + N]
            x0, x1 = x[a0 + q:a0 + q + N], x[a1 + q:a1 + q + N]
            x2, x3 = x[a2 + q:a2 + q + N], x[a3 + q:a3 + q + N]
            for t in range(N):
                g = gv[t]
                s0 += g * x0[t]
                s1 += g * x1[t]
                s2 += g * x2[t]
                s3 += g * x3[t]
    acc[idx[i]] += s0
    acc[idx[i + 1]] += s1
    acc[idx[i + 2]] += s2
    acc[idx[i + 3]] += s3
