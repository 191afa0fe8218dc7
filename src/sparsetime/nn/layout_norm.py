"""BatchNorm that keeps the "channels, height, width, batch" (CHWN) layout of sparse convolutions.

:class:`~sparsetime.nn.SparseConv2d` returns its output as an (N, C, H, W) view of CHWN memory, so
that the next sparse convolution reads it without a copy. ``nn.BatchNorm2d`` turns such a view into
contiguous NCHW (and runs its slow strided path doing so), which costs the next sparse convolution
a transposing copy of its input and of its output gradient. Per-channel statistics over (N, H, W)
are the same numbers as over the H*W*N values of one channel's contiguous CHWN block, so
:class:`LayoutBatchNorm2d` normalises the memory viewed as (1, C, H*W*N, 1) and returns the result
in the input's layout, as a tensor of its own rather than a view (an in-place ReLU after a view
costs a copy of the gradient, see :mod:`sparsetime.kernels.layout`). Everything else (running
statistics, momentum, eval mode, state_dict) is ``nn.BatchNorm2d``'s own.
"""
from __future__ import annotations

import torch
from torch import nn

from ..kernels.layout import permuted


def is_chwn(x: torch.Tensor) -> bool:
    """Whether a 4-D (N, C, H, W) tensor is a view of contiguous CHWN memory (and not also NCHW)."""
    return x.dim() == 4 and x.shape[0] > 1 and not x.is_contiguous() and x.permute(1, 2, 3, 0).is_contiguous()


class LayoutBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose output keeps a CHWN input's layout; other inputs take the usual path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not is_chwn(x):
            return super().forward(x)
        n, c, h, w = x.shape
        flat = x.permute(1, 2, 3, 0).reshape(1, c, h * w * n, 1)  # a view: no copy
        return permuted(super().forward(flat), (c, h, w, n), (3, 0, 1, 2))


def keep_layout_norms(model: nn.Module) -> int:
    """Make every plain ``nn.BatchNorm2d`` of ``model`` a :class:`LayoutBatchNorm2d`, in place.

    Only the class changes: parameters, buffers and every reference to them (optimizers, hooks)
    stay the same objects. Returns the number of modules changed."""
    return swap_exact_class(model, nn.BatchNorm2d, LayoutBatchNorm2d)


def swap_exact_class(model: nn.Module, plain: type[nn.Module], layout: type[nn.Module]) -> int:
    """Set ``__class__`` to ``layout`` on every module of ``model`` whose class is exactly ``plain``
    (not a subclass: a user's own subclass keeps its forward); returns how many changed."""
    changed = 0
    for module in model.modules():
        if type(module) is plain:
            module.__class__ = layout
            changed += 1
    return changed
