"""Outputs of the sparse autograd functions in the kernels' own memory layouts.

The kernels write "features x batch" (linear) and "channels, height, width, batch" (conv) memory and
return it as a permuted (N, ...) tensor, so that the next sparse layer reads it without a copy. A
permutation made inside ``autograd.Function.forward`` is a *view*, and PyTorch forbids in-place
ops on such views (``nn.ReLU(inplace=True)`` right after a sparse layer raised). :func:`own` gives
the same memory, sizes and strides as a tensor of its own, which autograd treats like any output.

A permutation made outside a Function is a view that autograd does allow in-place ops on, at a
price: ``relu_`` of the view is recorded on its base as ``CopySlices``, whose backward copies the
whole gradient and runs ``as_strided``'s backward (measured in a CIFAR VGG-16 at density 0.02:
a third of the training step). :func:`permuted` makes the permutation an autograd op whose output
is not a view, so in-place ops after it cost what they cost on any tensor.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch


def own(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself, or, when it is a view, a non-view tensor over the same memory and strides."""
    if not t._is_view():
        return t
    out = torch.empty(0, dtype=t.dtype, device=t.device)
    return out.set_(t.untyped_storage(), t.storage_offset(), t.shape, t.stride())


class _Permuted(torch.autograd.Function):
    """``t.view(shape).permute(dims)`` as a tensor of its own (not a view of ``t``).

    Only for ``t`` whose value no autograd node reads back after an in-place op on the result:
    the outputs of BatchNorm and max pooling, whose backward passes read their inputs (and saved
    statistics or indices), never their outputs."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, shape: tuple[int, ...], dims: tuple[int, ...]) -> torch.Tensor:
        ctx.in_shape, ctx.dims = t.shape, dims
        return own(t.view(shape).permute(dims))

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        inverse = [0] * len(ctx.dims)
        for i, d in enumerate(ctx.dims):
            inverse[d] = i
        return g.permute(inverse).reshape(ctx.in_shape), None, None


def to_chwn(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) ``x`` as a permuted view of contiguous CHWN memory: ``x`` itself when it already
    is one, else a transposing copy (differentiable; its backward transposes the gradient back).

    A contiguous ``x`` is copied as the 2-D transpose (N, CHW) -> (CHW, N), which PyTorch does about
    twice as fast as the equivalent 4-D permute."""
    if x.permute(1, 2, 3, 0).is_contiguous():
        return x
    if x.is_contiguous():
        n, c, h, w = x.shape
        return x.reshape(n, c * h * w).t().contiguous().view(c, h, w, n).permute(3, 0, 1, 2)
    return x.permute(1, 2, 3, 0).contiguous().permute(3, 0, 1, 2)


def permuted(t: torch.Tensor, shape: Sequence[int], dims: Sequence[int]) -> torch.Tensor:
    """``t.view(shape).permute(dims)``, differentiable, returned as a non-view tensor over t's memory."""
    return _Permuted.apply(t, tuple(shape), tuple(dims))
