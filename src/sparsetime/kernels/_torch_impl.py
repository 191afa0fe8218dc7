"""Pure-torch versions of the CSR products, used when numba is absent or the tensors are not
CPU float32/float64. Same layout contract as the numba kernels (features x batch)."""
from __future__ import annotations

import warnings

import torch


def csr_tensor(row_ptr: torch.Tensor, col_idx: torch.Tensor, values: torch.Tensor,
               shape: tuple[int, int]) -> torch.Tensor:
    """A torch sparse CSR tensor sharing the given index and value storage (no invariant check)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        return torch.sparse_csr_tensor(row_ptr, col_idx, values, size=shape, check_invariants=False)


def spmm_t(row_ptr: torch.Tensor, col_idx: torch.Tensor, values: torch.Tensor, xt: torch.Tensor,
           n_rows: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    """yt = W @ xt (+ bias[:, None]) with W the CSR matrix (n_rows, xt.shape[0])."""
    w = csr_tensor(row_ptr, col_idx, values, (n_rows, xt.shape[0]))
    if bias is None:
        return torch.sparse.mm(w, xt)
    return torch.addmm(bias.unsqueeze(1), w, xt)


def sddmm_t(row_ptr: torch.Tensor, col_idx: torch.Tensor, at: torch.Tensor,
            bt: torch.Tensor) -> torch.Tensor:
    """out[p] = dot(at[i], bt[col[p]]) on the pattern: (at @ bt.T) sampled at the nonzeros."""
    nnz = col_idx.numel()
    if nnz == 0 or at.shape[1] == 0:
        return at.new_zeros(nnz)
    pattern = csr_tensor(row_ptr, col_idx, at.new_zeros(nnz), (at.shape[0], bt.shape[0]))
    return torch.sparse.sampled_addmm(pattern, at, bt.t(), beta=0.0).values()
