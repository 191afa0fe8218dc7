"""Loss and accuracy of a model on a dataset."""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn


def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             device: torch.device) -> tuple[float, float]:
    """Mean cross-entropy (no label smoothing) and accuracy over ``batches``, in eval mode."""
    loss_sum, correct, seen = evaluation_sums(model, batches, device)
    if seen == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    return loss_sum / seen, correct / seen


@torch.no_grad()
def evaluation_sums(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    device: torch.device) -> tuple[float, int, int]:
    """(summed cross-entropy, correct predictions, examples) over ``batches``, in eval mode; sums,
    so that shards evaluated on several ranks add up.

    The model's train/eval mode is restored afterwards. Syncs with the device once, at the end.
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    try:
        for x, y in batches:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = model(x)
            loss_sum += F.cross_entropy(out, y, reduction="sum").double()
            correct += (out.argmax(1) == y).sum()
            seen += y.shape[0]
    finally:
        model.train(was_training)
    return loss_sum.item(), int(correct.item()), seen
