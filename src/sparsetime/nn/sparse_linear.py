"""``SparseLinear``: a linear layer whose weight exists only as (values, CSR indices).

The weight's nonzeros are one Parameter ``weight_values`` of length nnz, so any optimizer keeps
O(nnz) state. The index lives in int32 buffers: ``row_ptr``/``col_idx`` (saved in the
state_dict) and the cached transpose ``t_row_ptr``/``t_col_idx``/``t_perm`` (rebuilt on load).
Forward and both gradients run as sparse kernels (:mod:`sparsetime.kernels`).
"""
from __future__ import annotations

import torch
from torch import nn

from ..kernels.csr import flat_indices, pattern_from_flat, pattern_from_mask, validate_csr
from ..kernels.linear import sparse_linear
from .base import SparseModule, check_positive


class SparseLinear(SparseModule):
    """``y = x W^T + b`` with W of shape (out_features, in_features) stored sparse.

    ``density`` fixes nnz = floor(density * out * in + 0.5) positions drawn uniformly without
    replacement. Values start like ``nn.Linear`` (U(-1/sqrt(in), 1/sqrt(in))); with
    ``rescale_init`` each output unit's weights are multiplied by sqrt(in / active fan-in) so the
    pre-activation variance matches the dense layer. ``backend`` None picks numba when
    available, else torch. The output is a transposed view (features-major memory), see
    :mod:`sparsetime.kernels.linear`.
    """

    def __init__(self, in_features: int, out_features: int, density: float, bias: bool = True, *,
                 rescale_init: bool = True, generator: torch.Generator | None = None,
                 backend: str | None = None, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.in_features = check_positive("in_features", in_features)
        self.out_features = check_positive("out_features", out_features)
        self.backend = backend
        self._init_sparse((out_features, in_features), density, bias, rescale_init, generator, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sparse_linear(x, self.weight_values, self.pattern, self.bias, self.backend, self._sink)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"density={self.density:.4g}, nnz={self.nnz}, bias={self.bias is not None}")

    def _grad_rows(self, r0: int, r1: int) -> torch.Tensor:
        xt, gyt = self._sink["xt"], self._sink["gyt"]
        return gyt[r0:r1].to(xt.dtype) @ xt.t()

    @classmethod
    def _empty(cls, in_features: int, out_features: int, backend: str | None) -> "SparseLinear":
        layer = cls.__new__(cls)
        SparseModule.__init__(layer)
        layer.in_features, layer.out_features, layer.backend = in_features, out_features, backend
        return layer

    @classmethod
    def from_dense(cls, linear: nn.Linear, mask: torch.Tensor | None = None,
                   backend: str | None = None) -> "SparseLinear":
        """A SparseLinear holding ``linear.weight`` at the True positions of ``mask``
        (default: its nonzeros) and a copy of its bias."""
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"from_dense expects an nn.Linear, got {type(linear).__name__}")
        w = linear.weight.detach()
        if mask is None:
            mask = w != 0
        if tuple(mask.shape) != tuple(w.shape):
            raise ValueError(f"mask shape {tuple(mask.shape)} must equal the weight shape {tuple(w.shape)}")
        mask = mask.to(device=w.device, dtype=torch.bool)
        layer = cls._empty(linear.in_features, linear.out_features, backend)
        layer._init_from(tuple(w.shape), pattern_from_mask(mask), w[mask],
                         linear.bias.detach() if linear.bias is not None else None)
        return layer

    @classmethod
    def from_sparse(cls, weight: torch.Tensor, bias: torch.Tensor | None = None,
                    backend: str | None = None) -> "SparseLinear":
        """A SparseLinear from a 2-D torch sparse tensor (COO or CSR) of shape (out, in)."""
        if weight.dim() != 2 or weight.layout not in (torch.sparse_coo, torch.sparse_csr):
            raise ValueError(f"weight must be a 2-D sparse COO or CSR tensor, got layout "
                             f"{weight.layout} with shape {tuple(weight.shape)}")
        if weight.layout == torch.sparse_coo:
            weight = weight.coalesce().to_sparse_csr()
        shape = tuple(weight.shape)
        validate_csr(weight.crow_indices(), weight.col_indices(), shape)
        flat = flat_indices(weight.crow_indices(), weight.col_indices(), shape[1])
        layer = cls._empty(shape[1], shape[0], backend)
        layer._init_from(shape, pattern_from_flat(flat, shape, check=False), weight.values().detach(), bias)
        return layer
