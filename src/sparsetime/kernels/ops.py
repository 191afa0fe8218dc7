"""Backend-dispatched sparse products in the "features x batch" layout.

* :func:`spmm_t` -- ``Y^T = W X^T (+ b)``: forward of a sparse linear layer, and with the
  transposed pattern the gradient w.r.t. its input;
* :func:`spmm_rowmajor` -- the same product written batch-major, ``Y = X W^T (+ b)``: the
  gradient w.r.t. a row-major input comes out in the layout autograd keeps, without a copy;
* :func:`sddmm_t` -- ``dW[p] = (dY^T X)[i, j]`` only at the nonzeros p = (i, j): the gradient
  w.r.t. the weight values, sampled on the pattern;
* :func:`feature_major` -- (batch, features) -> contiguous (features, batch), the layout change
  in front of the products (a cache-blocked numba transpose; torch's strided copy is slower).

Dense operands are 2-D with one row per feature and the batch contiguous. Every function picks the
numba kernels when possible (see :mod:`sparsetime.kernels.backend`) and torch otherwise.
"""
from __future__ import annotations

import torch

from . import _torch_impl
from .backend import numba_kernels, resolve_backend, sync_threads


def _rowmajor(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_contiguous() else t.contiguous()


def _pick(backend: str | None, *tensors: torch.Tensor) -> str:
    auto = resolve_backend(*tensors)
    if backend in (None, "auto"):
        return auto
    if backend == "numba" and auto != "numba":
        raise ValueError("backend 'numba' needs numba installed and enabled, CPU tensors and "
                         "float32/float64 data; allowed here: 'torch' or None (auto)")
    if backend not in ("numba", "torch"):
        raise ValueError(f"unknown backend {backend!r}; allowed: None/'auto', 'numba', 'torch'")
    return backend


def _check_spmm(col_idx: torch.Tensor, values: torch.Tensor, xt: torch.Tensor) -> None:
    if xt.dim() != 2:
        raise ValueError(f"xt must be 2-D (features, batch), got shape {tuple(xt.shape)}")
    if values.numel() != col_idx.numel():
        raise ValueError(f"values has {values.numel()} entries but the pattern has {col_idx.numel()}")


def _spmm_numba(kernel_name: str, row_ptr: torch.Tensor, col_idx: torch.Tensor, values: torch.Tensor,
                xt: torch.Tensor, out_shape: tuple[int, int], bias: torch.Tensor | None,
                threads: int | None) -> torch.Tensor:
    k = numba_kernels()
    sync_threads(threads, col_idx.numel() * xt.shape[1])
    xt = _rowmajor(xt.detach())
    out = torch.empty(out_shape, dtype=xt.dtype, device=xt.device)
    b = (_rowmajor(bias.detach()).to(xt.dtype).numpy() if bias is not None
         else k.empty_bias(out.numpy().dtype))
    getattr(k, kernel_name)(row_ptr.numpy(), col_idx.numpy(),
                            _rowmajor(values.detach()).to(xt.dtype).numpy(), xt.numpy(), out.numpy(),
                            b, bias is not None)
    return out


def spmm_t(row_ptr: torch.Tensor, col_idx: torch.Tensor, values: torch.Tensor, xt: torch.Tensor,
           n_rows: int, bias: torch.Tensor | None = None, backend: str | None = None,
           threads: int | None = None) -> torch.Tensor:
    """Return ``yt`` of shape (n_rows, batch): ``yt[i] = bias[i] + sum_p values[p] * xt[col_idx[p]]``.

    ``threads``: numba thread count (default ``torch.get_num_threads()``).
    """
    _check_spmm(col_idx, values, xt)
    if _pick(backend, values, xt) == "torch":
        return _torch_impl.spmm_t(row_ptr, col_idx, values, xt, n_rows, bias)
    return _spmm_numba("spmm_t", row_ptr, col_idx, values, xt, (n_rows, xt.shape[1]), bias, threads)


def spmm_rowmajor(row_ptr: torch.Tensor, col_idx: torch.Tensor, values: torch.Tensor,
                  xt: torch.Tensor, n_rows: int, bias: torch.Tensor | None = None,
                  backend: str | None = None, threads: int | None = None) -> torch.Tensor:
    """:func:`spmm_t` transposed: ``y`` of shape (batch, n_rows) with ``y[:, i] = yt[i]``.

    On the numba path ``y`` is contiguous (written transposed by the kernel); the torch path
    returns a transposed view of :func:`spmm_t`'s result.
    """
    _check_spmm(col_idx, values, xt)
    if _pick(backend, values, xt) == "torch":
        return _torch_impl.spmm_t(row_ptr, col_idx, values, xt, n_rows, bias).t()
    return _spmm_numba("spmm_rowmajor", row_ptr, col_idx, values, xt, (xt.shape[1], n_rows), bias,
                       threads)


#: below this many elements torch's transpose wins: the numba call costs ~20 us to dispatch
_NUMBA_TRANSPOSE_MIN = 1 << 15


def feature_major(x2d: torch.Tensor, backend: str | None = None,
                  threads: int | None = None) -> torch.Tensor:
    """(batch, features) -> contiguous (features, batch), detached from autograd.

    Free when ``x2d`` is already such a transposed view; a large row-major ``x2d`` is transposed
    by a cache-blocked numba kernel when the numba backend applies, otherwise by torch.
    """
    if x2d.dim() != 2:
        raise ValueError(f"x2d must be 2-D (batch, features), got shape {tuple(x2d.shape)}")
    t = x2d.detach().t()
    if t.is_contiguous():
        return t
    if (x2d.numel() < _NUMBA_TRANSPOSE_MIN or not x2d.is_contiguous()
            or x2d.dtype not in (torch.float32, torch.float64) or _pick(backend, x2d) == "torch"):
        return t.contiguous()
    sync_threads(threads, x2d.numel())
    out = torch.empty(t.shape, dtype=t.dtype, device=t.device)
    numba_kernels().transpose(x2d.detach().numpy(), out.numpy())
    return out


def sddmm_t(row_ptr: torch.Tensor, col_idx: torch.Tensor, at: torch.Tensor, bt: torch.Tensor,
            backend: str | None = None, threads: int | None = None,
            row_sums: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Return values of shape (nnz,): ``out[p] = dot(at[i], bt[col_idx[p]])`` for p in row i.

    With ``row_sums`` return ``(out, at.sum(1))`` (the bias gradient, fused into the kernel).
    """
    if at.dim() != 2 or bt.dim() != 2 or at.shape[1] != bt.shape[1]:
        raise ValueError(f"at and bt must be 2-D with the same batch size, got {tuple(at.shape)} "
                         f"and {tuple(bt.shape)}")
    backend = _pick(backend, at, bt)
    if backend == "torch":
        out = _torch_impl.sddmm_t(row_ptr, col_idx, at, bt)
        return (out, at.sum(1)) if row_sums else out
    k = numba_kernels()
    sync_threads(threads, col_idx.numel() * at.shape[1])
    at = _rowmajor(at.detach())
    bt = _rowmajor(bt.detach()).to(at.dtype)
    out = torch.empty(col_idx.numel(), dtype=at.dtype, device=at.device)
    sums = torch.empty(at.shape[0] if row_sums else 1, dtype=at.dtype, device=at.device)
    k.sddmm_t(row_ptr.numpy(), col_idx.numpy(), at.numpy(), bt.numpy(), out.numpy(), sums.numpy(), row_sums)
    return (out, sums) if row_sums else out
