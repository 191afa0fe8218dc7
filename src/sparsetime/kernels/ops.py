"""Backend-dispatched sparse products in the "features x batch" layout.

* :func:`spmm_t` -- ``Y^T = W X^T (+ b)``: forward of a sparse linear layer, and with the
  transposed pattern the gradient w.r.t. its input;
* :func:`sddmm_t` -- ``dW[p] = (dY^T X)[i, j]`` only at the nonzeros p = (i, j): the gradient
  w.r.t. the weight values, sampled on the pattern.

Dense operands are 2-D with one row per feature and the batch contiguous. Both functions pick the
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


def spmm_t(row_ptr: torch.Tensor, col_idx: torch.Tensor, values: torch.Tensor, xt: torch.Tensor,
           n_rows: int, bias: torch.Tensor | None = None, backend: str | None = None,
           threads: int | None = None) -> torch.Tensor:
    """Return ``yt`` of shape (n_rows, batch): ``yt[i] = bias[i] + sum_p values[p] * xt[col_idx[p]]``.

    ``threads``: numba thread count (default ``torch.get_num_threads()``).
    """
    if xt.dim() != 2:
        raise ValueError(f"xt must be 2-D (features, batch), got shape {tuple(xt.shape)}")
    if values.numel() != col_idx.numel():
        raise ValueError(f"values has {values.numel()} entries but the pattern has {col_idx.numel()}")
    backend = _pick(backend, values, xt)
    if backend == "torch":
        return _torch_impl.spmm_t(row_ptr, col_idx, values, xt, n_rows, bias)
    k = numba_kernels()
    sync_threads(threads, col_idx.numel() * xt.shape[1])
    xt = _rowmajor(xt.detach())
    out = torch.empty((n_rows, xt.shape[1]), dtype=xt.dtype, device=xt.device)
    b = (_rowmajor(bias.detach()).to(xt.dtype).numpy() if bias is not None
         else k.empty_bias(out.numpy().dtype))
    k.spmm_t(row_ptr.numpy(), col_idx.numpy(), _rowmajor(values.detach()).to(xt.dtype).numpy(),
             xt.numpy(), out.numpy(), b, bias is not None)
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
