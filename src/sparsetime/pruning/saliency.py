"""First-order and data-free saliency scores: random, magnitude, SNIP.

Each function returns {parameter name: score tensor} over the masked set (Linear/ConvNd weights
by default; pass ``dense_layers``/``dense_first``/``dense_last``/``extra_layers`` to change it);
higher means keep. Scores never change the model: gradients are computed on a deep copy.
``masks`` (optional) marks weights already pruned: they count as zero and score -inf.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from ._common import (Batch, Masks, default_loss, make_generator, parameters_by_name, resolve_device,
                      selected_names, take_batches, to_device, working_copy)
from .masking import masked_scores


def random_scores(model: nn.Module, batches: Iterable[Batch] | None = None, *,
                  generator: torch.Generator | None = None, seed: int | None = None,
                  masks: Mapping[str, torch.Tensor] | None = None,
                  dense_layers: Sequence[str] | None = None, dense_first: bool = False,
                  dense_last: bool = False, extra_layers: Sequence[str] | None = None) -> Masks:
    """i.i.d. N(0, 1) scores (random pruning baseline); ``batches`` is ignored.

    Drawn on the CPU from ``generator`` (or a generator seeded with ``seed``) so results do not
    depend on the device.
    """
    names = selected_names(model, dense_layers, dense_first, dense_last, extra_layers)
    gen = make_generator(generator, seed)
    out = {}
    for name, p in zip(names, parameters_by_name(model, names)):
        out[name] = torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.device)
    return masked_scores(out, masks)


def magnitude_scores(model: nn.Module, batches: Iterable[Batch] | None = None, *,
                     masks: Mapping[str, torch.Tensor] | None = None,
                     dense_layers: Sequence[str] | None = None, dense_first: bool = False,
                     dense_last: bool = False, extra_layers: Sequence[str] | None = None) -> Masks:
    """|w| for every weight of the masked set; ``batches`` is ignored."""
    names = selected_names(model, dense_layers, dense_first, dense_last, extra_layers)
    out = {n: p.detach().abs().clone() for n, p in zip(names, parameters_by_name(model, names))}
    return masked_scores(out, masks)


def mean_gradients(work: nn.Module, params: list[nn.Parameter], data: list[Batch],
                   loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], device: torch.device,
                   temperature: float = 1.0, create_graph: bool = False) -> list[torch.Tensor]:
    """Gradient of the mean over ``data`` of ``loss_fn(work(x) / temperature, y)`` w.r.t. ``params``."""
    total = [torch.zeros_like(p) for p in params]
    for x, y in data:
        x = to_device(x, device, next(iter(params)).dtype)
        y = to_device(y, device)
        out = work(x)
        loss = loss_fn(out / temperature if temperature != 1.0 else out, y)
        grads = torch.autograd.grad(loss, params, create_graph=create_graph)
        total = [t + g for t, g in zip(total, grads)]
    return [t / len(data) for t in total]


def snip_scores(model: nn.Module, batches: Iterable[Batch] | None = None, *, num_batches: int = 1,
                loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                device: str | torch.device | None = None, masks: Mapping[str, torch.Tensor] | None = None,
                dense_layers: Sequence[str] | None = None, dense_first: bool = False,
                dense_last: bool = False, extra_layers: Sequence[str] | None = None) -> Masks:
    """SNIP connection sensitivity |g ⊙ w| (Lee et al. 2019).

    g is the gradient of the loss averaged over the first ``num_batches`` batches (loss
    ``loss_fn``, default cross-entropy), with the model in its current train/eval mode.
    """
    names = selected_names(model, dense_layers, dense_first, dense_last, extra_layers)
    data = take_batches(batches, num_batches, "snip")
    dev = resolve_device(model, device)
    work, params = working_copy(model, names, masks, dev)
    grads = mean_gradients(work, params, data, default_loss(loss_fn), dev)
    originals = parameters_by_name(model, names)
    out = {n: (g * p).detach().abs().to(o.device) for n, g, p, o in zip(names, grads, params, originals)}
    return masked_scores(out, masks)
