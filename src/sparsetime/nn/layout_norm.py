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

Where a dense convolution feeds sparse ones (the stem of a ResNet or a VGG: its first conv stays
dense), the BatchNorm after it is where the network enters the CHWN layout
(:func:`enter_layout_after_dense_convs` marks it): it transposes its NCHW input once, so that it,
the ReLU, the residual additions and their gradients all work on one layout. Left in NCHW, the
first sparse convolution copies its input anyway, and the operations that meet both layouts (the
identity shortcut's addition, the ReLU's backward) take PyTorch's slow strided paths: marking the
stem's BatchNorm made a CIFAR ResNet-18 step at density 0.05 2-3% faster, a VGG-16 one at 0.02 4-5%
(interleaved against a twin with the mark cleared, 2 threads).
"""
from __future__ import annotations

import torch
from torch import nn

from ..kernels.layout import permuted, to_chwn
from .sparse_conv import SparseConv2d


def is_chwn(x: torch.Tensor) -> bool:
    """Whether a 4-D (N, C, H, W) tensor is a view of contiguous CHWN memory (and not also NCHW)."""
    return x.dim() == 4 and x.shape[0] > 1 and not x.is_contiguous() and x.permute(1, 2, 3, 0).is_contiguous()


class LayoutBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose output keeps a CHWN input's layout; other inputs take the usual path,
    unless :attr:`enters_layout` is set: then a 4-D input of batch > 1 is first made CHWN."""

    #: transpose NCHW inputs to CHWN (set by :func:`enter_layout_after_dense_convs`); a class
    #: default, so modules swapped in place by :func:`keep_layout_norms` start without it
    enters_layout: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.enters_layout and x.dim() == 4 and x.shape[0] > 1:
            x = to_chwn(x)
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


def enter_layout_after_dense_convs(model: nn.Module) -> list[str]:
    """Set :attr:`LayoutBatchNorm2d.enters_layout` on each layout BatchNorm that, in module order,
    comes right after a dense ``nn.Conv2d`` and before a :class:`~sparsetime.nn.SparseConv2d`
    (the next convolution of either kind); returns their names.

    Module order stands in for the data flow, which a module cannot see: it is right for sequential
    stacks, ResNet stems and shortcuts. Where it is wrong only speed changes, never a number: every
    module here accepts both layouts (code that calls ``.view`` on the output needs ``.reshape``,
    as after any sparse convolution)."""
    marked: list[str] = []
    after_dense_conv = False
    pending: list[tuple[str, LayoutBatchNorm2d]] = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, SparseConv2d)):
            if isinstance(module, SparseConv2d):
                for norm_name, norm in pending:
                    norm.enters_layout = True
                    marked.append(norm_name)
            pending = []
            after_dense_conv = isinstance(module, nn.Conv2d)
        elif type(module) is LayoutBatchNorm2d and after_dense_conv:
            pending.append((name, module))
    return marked


def swap_exact_class(model: nn.Module, plain: type[nn.Module], layout: type[nn.Module]) -> int:
    """Set ``__class__`` to ``layout`` on every module of ``model`` whose class is exactly ``plain``
    (not a subclass: a user's own subclass keeps its forward); returns how many changed."""
    changed = 0
    for module in model.modules():
        if type(module) is plain:
            module.__class__ = layout
            changed += 1
    return changed
