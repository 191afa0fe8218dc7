"""Outputs of the sparse autograd functions in the kernels' own memory layouts.

The kernels write "features x batch" (linear) and "channels, height, width, batch" (conv) memory and
return it as a permuted (N, ...) tensor, so that the next sparse layer reads it without a copy. A
permutation made inside ``autograd.Function.forward`` is a *view*, and PyTorch forbids in-place
ops on such views (``nn.ReLU(inplace=True)`` right after a sparse layer raised). :func:`own` gives
the same memory, sizes and strides as a tensor of its own, which autograd treats like any output.
"""
from __future__ import annotations

import torch


def own(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself, or, when it is a view, a non-view tensor over the same memory and strides."""
    if not t._is_view():
        return t
    out = torch.empty(0, dtype=t.dtype, device=t.device)
    return out.set_(t.untyped_storage(), t.storage_offset(), t.shape, t.stride())
