"""GraSP: gradient signal preservation (Wang et al. 2020).

With L the mean loss over the scoring batches on logits divided by ``temperature`` (200), g = ∇L
and Hg the Hessian-gradient product (both over the masked set), the paper removes the weights
with the largest removal score -(w ⊙ Hg). We return the keep score w ⊙ Hg (signed): higher
means keep, so :func:`masks_from_scores` keeps exactly the weights GraSP keeps. Removing weight q
changes ‖g‖² by about -2 w_q (Hg)_q, so the kept weights are those whose removal would shrink
the gradient norm the most.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from ._common import (Batch, Masks, default_loss, parameters_by_name, resolve_device, selected_names,
                      take_batches, to_device, working_copy)
from .masking import masked_scores
from .saliency import mean_gradients


def grasp_scores(model: nn.Module, batches: Iterable[Batch] | None = None, *, num_batches: int = 1,
                 temperature: float = 200.0,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 device: str | torch.device | None = None, masks: Mapping[str, torch.Tensor] | None = None,
                 dense_layers: Sequence[str] | None = None, dense_first: bool = False,
                 dense_last: bool = False, extra_layers: Sequence[str] | None = None) -> Masks:
    """GraSP keep scores w ⊙ Hg (signed; keep the largest), from the first ``num_batches`` batches."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    names = selected_names(model, dense_layers, dense_first, dense_last, extra_layers)
    data = take_batches(batches, num_batches, "grasp")
    dev = resolve_device(model, device)
    loss = default_loss(loss_fn)
    work, params = working_copy(model, names, masks, dev)
    g = [t.detach() for t in mean_gradients(work, params, data, loss, dev, temperature=float(temperature))]
    hg = [torch.zeros_like(p) for p in params]
    for x, y in data:
        out = work(to_device(x, dev, params[0].dtype)) / float(temperature)
        grads = torch.autograd.grad(loss(out, to_device(y, dev)), params, create_graph=True)
        z = sum((gi * fi).sum() for gi, fi in zip(g, grads))
        hz = torch.autograd.grad(z, params, allow_unused=True)
        hg = [h if t is None else h + t for h, t in zip(hg, hz)]
    originals = parameters_by_name(model, names)
    out = {n: (p.detach() * h / len(data)).to(o.device) for n, p, h, o in zip(names, params, hg, originals)}
    return masked_scores(out, masks)
