"""The library's sparse weight index: CSR (row pointers + int32 column indices) plus a cached
transposed index for the backward pass.

A 2-D weight of shape ``(rows, cols)`` with ``nnz`` active entries is described by

* ``row_ptr`` (rows + 1, int32) and ``col_idx`` (nnz, int32): CSR order, columns ascending
  within a row, which is the same order as the sorted flat indices ``row * cols + col``;
* ``t_row_ptr`` (cols + 1), ``t_col_idx`` (nnz: the row of each entry) and ``t_perm`` (nnz: the
  CSR position of each entry), all int32: the same entries in column-major order, so
  ``values[t_perm]`` are the values of the transposed matrix in CSR order.

Values live elsewhere (a Parameter of length nnz), so optimizer state stays O(nnz).
Everything is built from int64 flat indices without materialising a dense matrix.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

INDEX_DTYPE = torch.int32
_MAX_NNZ = 2**31 - 1


class CSRPattern(NamedTuple):
    """Sparsity pattern of a (rows, cols) matrix in CSR order with its cached transpose."""

    shape: tuple[int, int]
    row_ptr: torch.Tensor
    col_idx: torch.Tensor
    t_row_ptr: torch.Tensor
    t_col_idx: torch.Tensor
    t_perm: torch.Tensor

    @property
    def nnz(self) -> int:
        return int(self.col_idx.numel())

    def to(self, device: torch.device | str) -> "CSRPattern":
        """The same pattern on ``device``."""
        return CSRPattern(self.shape, *(t.to(device) for t in self[1:]))


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    if len(shape) != 2 or any(int(s) < 0 for s in shape):
        raise ValueError(f"shape must be two non-negative ints (rows, cols), got {tuple(shape)}")
    rows, cols = int(shape[0]), int(shape[1])
    if rows >= _MAX_NNZ or cols >= _MAX_NNZ:
        raise ValueError(f"shape {shape} too large for int32 indices (each dim < {_MAX_NNZ})")
    return rows, cols


def row_pointers(rows_of_entries: torch.Tensor, n_rows: int) -> torch.Tensor:
    """int32 CSR row pointers from the (sorted) row index of each entry."""
    ptr = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows_of_entries.device)
    if rows_of_entries.numel():
        ptr[1:] = torch.bincount(rows_of_entries.long(), minlength=n_rows).cumsum(0)
    return ptr.to(INDEX_DTYPE)


def transpose_index(row_ptr: torch.Tensor, col_idx: torch.Tensor,
                    shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t_row_ptr, t_col_idx, t_perm) of the transposed pattern; a stable sort keeps rows ascending."""
    rows, cols = _check_shape(shape)
    row_of = entry_rows(row_ptr)
    perm = torch.argsort(col_idx.long(), stable=True)
    t_row_ptr = row_pointers(col_idx.long()[perm], cols)
    return t_row_ptr, row_of[perm].to(INDEX_DTYPE), perm.to(INDEX_DTYPE)


def entry_rows(row_ptr: torch.Tensor) -> torch.Tensor:
    """int64 row index of every entry, from CSR row pointers."""
    counts = (row_ptr[1:] - row_ptr[:-1]).long()
    return torch.repeat_interleave(torch.arange(counts.numel(), device=row_ptr.device), counts)


def pattern_from_flat(flat: torch.Tensor, shape: tuple[int, int], check: bool = True) -> CSRPattern:
    """CSR pattern from strictly increasing int64 flat indices ``row * cols + col``."""
    rows, cols = _check_shape(shape)
    flat = flat.reshape(-1).long()
    if flat.numel() > _MAX_NNZ:
        raise ValueError(f"{flat.numel()} nonzeros exceed the int32 index limit {_MAX_NNZ}")
    if check and flat.numel():
        if int(flat[0]) < 0 or int(flat[-1]) >= rows * cols:
            raise ValueError(f"flat indices must lie in [0, {rows * cols}) for shape {shape}, "
                             f"got range [{int(flat.min())}, {int(flat.max())}]")
        if flat.numel() > 1 and not bool((flat[1:] > flat[:-1]).all()):
            raise ValueError("flat indices must be strictly increasing (sorted, no duplicates)")
    if cols == 0:
        row_of = flat
        col = flat
    else:
        row_of = torch.div(flat, cols, rounding_mode="floor")
        col = flat - row_of * cols
    row_ptr = row_pointers(row_of, rows)
    col_idx = col.to(INDEX_DTYPE)
    return CSRPattern((rows, cols), row_ptr, col_idx, *transpose_index(row_ptr, col_idx, (rows, cols)))


def pattern_from_mask(mask: torch.Tensor) -> CSRPattern:
    """CSR pattern of the True entries of a 2-D boolean mask (row-major order)."""
    if mask.dim() != 2:
        raise ValueError(f"mask must be 2-D (rows, cols), got shape {tuple(mask.shape)}")
    flat = mask.reshape(-1).nonzero().squeeze(1)
    return pattern_from_flat(flat, tuple(mask.shape), check=False)


def flat_indices(row_ptr: torch.Tensor, col_idx: torch.Tensor, cols: int) -> torch.Tensor:
    """Sorted int64 flat indices ``row * cols + col`` of a CSR pattern."""
    return entry_rows(row_ptr) * int(cols) + col_idx.long()


def validate_csr(row_ptr: torch.Tensor, col_idx: torch.Tensor, shape: tuple[int, int]) -> None:
    """Raise ValueError unless (row_ptr, col_idx) is a well-formed CSR pattern of ``shape``.

    Well formed: row_ptr has rows + 1 non-decreasing entries from 0 to nnz, and the columns of
    each row are strictly increasing and inside [0, cols). Used on indices read from files.
    """
    rows, cols = _check_shape(shape)
    if row_ptr.dim() != 1 or row_ptr.numel() != rows + 1:
        raise ValueError(f"row_ptr must have {rows + 1} entries for shape {shape}, got {tuple(row_ptr.shape)}")
    if col_idx.dim() != 1:
        raise ValueError(f"col_idx must be 1-D, got shape {tuple(col_idx.shape)}")
    if row_ptr.is_floating_point() or col_idx.is_floating_point():
        raise ValueError(f"indices must be integer tensors, got {row_ptr.dtype} and {col_idx.dtype}")
    nnz = col_idx.numel()
    rp = row_ptr.long()
    if int(rp[0]) != 0 or int(rp[-1]) != nnz:
        raise ValueError(f"row_ptr must start at 0 and end at nnz={nnz}, got {int(rp[0])}..{int(rp[-1])}")
    if rows and bool((rp[1:] < rp[:-1]).any()):
        raise ValueError("row_ptr must be non-decreasing")
    if nnz:
        c = col_idx.long()
        if int(c.min()) < 0 or int(c.max()) >= cols:
            raise ValueError(f"col_idx must lie in [0, {cols}), got [{int(c.min())}, {int(c.max())}]")
        flat = entry_rows(rp) * cols + c
        if nnz > 1 and not bool((flat[1:] > flat[:-1]).all()):
            raise ValueError("columns must be strictly increasing within each row (sorted, no duplicates)")
