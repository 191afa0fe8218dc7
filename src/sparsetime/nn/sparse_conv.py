"""``SparseConv2d``: a 2-D convolution whose weight exists only as (values, CSR indices).

The CSR is over the weight viewed as (out_channels, in_channels * KH * KW). With numba the
forward and both gradients are a direct sparse convolution; without it the torch fallback
scatters into a dense weight (see :mod:`sparsetime.kernels.conv`). groups must be 1.
"""
from __future__ import annotations

import torch
from torch import nn

from ..kernels.conv import _pair, sparse_conv2d
from ..kernels.csr import pattern_from_mask
from .base import SparseModule, check_positive


class SparseConv2d(SparseModule):
    """Sparse ``nn.Conv2d`` (groups=1, zero padding) with nnz = floor(density * N + 0.5)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 density: float, stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, bias: bool = True, *, rescale_init: bool = True,
                 generator: torch.Generator | None = None, backend: str | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self._set_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation, backend)
        self._init_sparse((out_channels, in_channels) + self.kernel_size, density, bias, rescale_init,
                          generator, device, dtype)

    def _set_geometry(self, in_channels, out_channels, kernel_size, stride, padding, dilation, backend):
        self.in_channels = check_positive("in_channels", in_channels)
        self.out_channels = check_positive("out_channels", out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        if min(self.kernel_size + self.stride + self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError("kernel_size, stride and dilation must be >= 1 and padding >= 0, got "
                             f"{self.kernel_size}, {self.stride}, {self.dilation}, {self.padding}")
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sparse_conv2d(x, self.weight_values, self.pattern, self.weight_shape, self.bias,
                             self.stride, self.padding, self.dilation, self.backend, self._sink)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"density={self.density:.4g}, nnz={self.nnz}, bias={self.bias is not None}")

    def _grad_rows(self, r0: int, r1: int) -> torch.Tensor:
        xc, gyc = self._sink["xc"], self._sink["gyc"]
        x = xc.permute(3, 0, 1, 2)
        gy = gyc[r0:r1].permute(3, 0, 1, 2)
        shape = (r1 - r0,) + tuple(self.weight_shape[1:])
        g = torch.nn.grad.conv2d_weight(x, shape, gy, self.stride, self.padding, self.dilation)
        return g.reshape(r1 - r0, -1)

    @classmethod
    def from_dense(cls, conv: nn.Conv2d, mask: torch.Tensor | None = None,
                   backend: str | None = None) -> "SparseConv2d":
        """A SparseConv2d holding ``conv.weight`` at the True positions of ``mask`` (default: its
        nonzeros) and a copy of its bias. Only groups=1 and padding_mode='zeros'."""
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"from_dense expects an nn.Conv2d, got {type(conv).__name__}")
        if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"only groups=1, padding_mode='zeros' and numeric padding are supported, got "
                             f"groups={conv.groups}, padding_mode={conv.padding_mode!r}, padding={conv.padding!r}")
        w = conv.weight.detach()
        if mask is None:
            mask = w != 0
        if tuple(mask.shape) != tuple(w.shape):
            raise ValueError(f"mask shape {tuple(mask.shape)} must equal the weight shape {tuple(w.shape)}")
        mask = mask.to(device=w.device, dtype=torch.bool)
        layer = cls.__new__(cls)
        SparseModule.__init__(layer)
        layer._set_geometry(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                            conv.padding, conv.dilation, backend)
        layer._init_from(tuple(w.shape), pattern_from_mask(mask.reshape(w.shape[0], -1)), w[mask],
                         conv.bias.detach() if conv.bias is not None else None)
        return layer
