"""Numba kernels for CSR products in the "features x batch" layout.

Every dense operand is stored transposed (one row per feature, the batch contiguous), so the
innermost loop of every kernel runs over the batch: an AXPY for the sparse-dense product and a dot
product for the sampled product (SDDMM). Rows are distributed over threads with ``prange``; eight
nonzeros are processed per pass so each output element is loaded and stored once per eight
multiply-adds. Two layout helpers sit at the edges of that layout: :func:`spmm_rowmajor` writes
its product batch-major (the input gradient autograd wants, without a separate copy) and
:func:`transpose` turns a row-major (batch, features) operand into the feature-major one.
Importing this module requires numba (see :mod:`sparsetime.kernels.backend`).
"""
from __future__ import annotations

import os

import numpy as np
from numba import njit, prange


@njit(fastmath=True, cache=True, nogil=True, inline="always")
def _row_axpy(row_ptr, col, val, xt, i, acc, b0):  # pragma: no cover - compiled
    """acc[:] = b0 + sum_p val[p] * xt[col[p], :] over the nonzeros p of row i."""
    nb = acc.shape[0]
    for b in range(nb):
        acc[b] = b0
    p = row_ptr[i]
    end = row_ptr[i + 1]
    while p + 8 <= end:
        x0 = xt[col[p]]
        x1 = xt[col[p + 1]]
        x2 = xt[col[p + 2]]
        x3 = xt[col[p + 3]]
        x4 = xt[col[p + 4]]
        x5 = xt[col[p + 5]]
        x6 = xt[col[p + 6]]
        x7 = xt[col[p + 7]]
        v0 = val[p]
        v1 = val[p + 1]
        v2 = val[p + 2]
        v3 = val[p + 3]
        v4 = val[p + 4]
        v5 = val[p + 5]
        v6 = val[p + 6]
        v7 = val[p + 7]
        for b in range(nb):
            acc[b] += ((v0 * x0[b] + v1 * x1[b]) + (v2 * x2[b] + v3 * x3[b])) + (
                (v4 * x4[b] + v5 * x5[b]) + (v6 * x6[b] + v7 * x7[b]))
        p += 8
    while p + 4 <= end:
        x0 = xt[col[p]]
        x1 = xt[col[p + 1]]
        x2 = xt[col[p + 2]]
        x3 = xt[col[p + 3]]
        v0 = val[p]
        v1 = val[p + 1]
        v2 = val[p + 2]
        v3 = val[p + 3]
        for b in range(nb):
            acc[b] += (v0 * x0[b] + v1 * x1[b]) + (v2 * x2[b] + v3 * x3[b])
        p += 4
    while p < end:
        x0 = xt[col[p]]
        v0 = val[p]
        for b in range(nb):
            acc[b] += v0 * x0[b]
        p += 1


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def spmm_t(row_ptr, col, val, xt, yt, bias, has_bias):  # pragma: no cover - compiled
    """yt[i, :] = bias[i] + sum_p val[p] * xt[col[p], :] over the nonzeros p of row i."""
    n_rows = row_ptr.shape[0] - 1
    for i in prange(n_rows):
        _row_axpy(row_ptr, col, val, xt, i, yt[i], bias[i] if has_bias else 0.0)


#: rows per block of :func:`spmm_rowmajor`: each batch row of the output gets 32 contiguous
#: values (two cache lines in fp32) per block; 16 measured slower, 64 about the same
_ROW_BLOCK = 32


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def spmm_rowmajor(row_ptr, col, val, xt, y, bias, has_bias):  # pragma: no cover - compiled
    """y[:, i] = bias[i] + sum_p val[p] * xt[col[p], :]: the product of :func:`spmm_t` written
    batch-major (y is (batch, n_rows), C order). Rows are computed in blocks into a small buffer
    that is then written out transposed, so no separate transpose pass touches memory."""
    n_rows = row_ptr.shape[0] - 1
    nb = xt.shape[1]
    n_blocks = (n_rows + _ROW_BLOCK - 1) // _ROW_BLOCK
    for blk in prange(n_blocks):
        i0 = blk * _ROW_BLOCK
        i1 = min(i0 + _ROW_BLOCK, n_rows)
        acc = np.empty((_ROW_BLOCK, nb), dtype=y.dtype)
        for i in range(i0, i1):
            _row_axpy(row_ptr, col, val, xt, i, acc[i - i0], bias[i] if has_bias else 0.0)
        for b in range(nb):
            yb = y[b]
            for i in range(i0, i1):
                yb[i] = acc[i - i0, b]


#: transpose tiles: _TILE x _TILE elements (registers/L1) inside _BAND x _BAND blocks (L1/L2)
_TILE = 8
_BAND = 64


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def transpose(src, dst):  # pragma: no cover - compiled
    """dst[j, i] = src[i, j] for C-ordered 2-D arrays, cache-blocked; bands of dst rows are split
    over threads. Several times faster than a strided copy for the power-of-two shapes of
    typical layers, whose row strides alias in the caches."""
    n, m = src.shape
    n_bands = (m + _BAND - 1) // _BAND
    for band in prange(n_bands):
        j0 = band * _BAND
        j1 = min(j0 + _BAND, m)
        for ib in range(0, n, _BAND):
            ib1 = min(ib + _BAND, n)
            for jt in range(j0, j1, _TILE):
                for it in range(ib, ib1, _TILE):
                    if jt + _TILE <= j1 and it + _TILE <= ib1:
                        for j in range(_TILE):  # constant trip counts: unrolled by LLVM
                            d = dst[jt + j]
                            for i in range(_TILE):
                                d[it + i] = src[it + i, jt + j]
                    else:
                        for j in range(jt, min(jt + _TILE, j1)):
                            for i in range(it, min(it + _TILE, ib1)):
                                dst[j, i] = src[i, j]


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def sddmm_t(row_ptr, col, at, bt, out, row_sum, want_row_sum):  # pragma: no cover - compiled
    """out[p] = dot(at[i, :], bt[col[p], :]) for every nonzero p = (i, col[p]); with
    ``want_row_sum`` also row_sum[i] = sum(at[i, :]) (the bias gradient, fused in)."""
    n_rows = row_ptr.shape[0] - 1
    nb = at.shape[1]
    zero = at.dtype.type(0)
    for i in prange(n_rows):
        a = at[i]
        if want_row_sum:
            acc = zero
            for b in range(nb):
                acc += a[b]
            row_sum[i] = acc
        p = row_ptr[i]
        end = row_ptr[i + 1]
        while p + 8 <= end:
            x0 = bt[col[p]]
            x1 = bt[col[p + 1]]
            x2 = bt[col[p + 2]]
            x3 = bt[col[p + 3]]
            x4 = bt[col[p + 4]]
            x5 = bt[col[p + 5]]
            x6 = bt[col[p + 6]]
            x7 = bt[col[p + 7]]
            s0 = zero
            s1 = zero
            s2 = zero
            s3 = zero
            s4 = zero
            s5 = zero
            s6 = zero
            s7 = zero
            for b in range(nb):
                ab = a[b]
                s0 += ab * x0[b]
                s1 += ab * x1[b]
                s2 += ab * x2[b]
                s3 += ab * x3[b]
                s4 += ab * x4[b]
                s5 += ab * x5[b]
                s6 += ab * x6[b]
                s7 += ab * x7[b]
            out[p] = s0
            out[p + 1] = s1
            out[p + 2] = s2
            out[p + 3] = s3
            out[p + 4] = s4
            out[p + 5] = s5
            out[p + 6] = s6
            out[p + 7] = s7
            p += 8
        while p < end:
            x0 = bt[col[p]]
            s0 = zero
            for b in range(nb):
                s0 += a[b] * x0[b]
            out[p] = s0
            p += 1


def empty_bias(dtype) -> np.ndarray:
    """Placeholder bias array for kernels called without a bias (numba needs a typed array)."""
    return np.zeros(1, dtype=dtype)


def _start_thread_pool() -> None:
    """Start numba's thread pool with passive waiting.

    Numba's OpenMP layer loads its own libgomp, distinct from torch's; with the default policy its
    idle workers spin after every kernel and steal the cores torch's threads need next. Passive
    workers sleep at once. The variable is read when libgomp loads, so it is set only around that
    moment (and never overrides a user's own setting).
    """
    user_set = "OMP_WAIT_POLICY" in os.environ
    if not user_set:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        z = np.zeros(1, dtype=np.int32)
        spmm_t(z, z[:0], np.zeros(0, np.float32), np.zeros((1, 1), np.float32),
               np.zeros((0, 1), np.float32), empty_bias(np.float32), False)
    finally:
        if not user_set:
            del os.environ["OMP_WAIT_POLICY"]


_start_thread_pool()
