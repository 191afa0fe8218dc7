"""Dense pre-training on random labels before a lottery experiment (Frankle et al. 2020b, section 5).

Each pass walks the same seeded batches (``batches()`` gives them afresh) and draws the labels from
a generator re-seeded at every pass, so every example keeps one random label over the passes (labels
with no signal to learn, only memorise). The pre-training uses its own optimiser (the run's
optimiser type and defaults), so the run's optimiser state is untouched.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import torch
from torch import nn

from .flops import count_layer_flops, inference_flops

log = logging.getLogger(__name__)

Batches = Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]


def pretrain_random_labels(model: nn.Module, batches: Batches, epochs: int, like: torch.optim.Optimizer,
                           loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], seed: int) -> float:
    """Train ``model`` densely for ``epochs`` passes on fixed random labels; returns the training FLOPs (3 f_D each)."""
    optimizer = type(like)(model.parameters(), **like.defaults)
    model.train()
    seen, flops_per_example = 0, None
    for epoch in range(epochs):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + 77)
        for x, _ in batches():
            out = model(x)
            if flops_per_example is None:
                flops_per_example = 3.0 * inference_flops(count_layer_flops(model, x.shape[1:], x.device))
            labels = torch.randint(out.shape[1], (x.shape[0],), generator=generator).to(out.device)
            loss = loss_fn(out, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += x.shape[0]
        log.info("random-label pre-training: pass %d/%d, last loss %.4f", epoch + 1, epochs, float(loss.detach()))
    model.zero_grad(set_to_none=True)
    return float(seen * (flops_per_example or 0.0))
