"""Fully connected classifiers: a configurable MLP and LeNet-300-100."""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from .registry import register_model


class MLP(nn.Module):
    """Flatten, then Linear layers with ReLU between them (none after the last).

    Layers are ``layers.0`` ... ``layers.{k}``; the last one is the classifier.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int) -> None:
        super().__init__()
        widths = [in_features, *hidden, num_classes]
        self.flatten = nn.Flatten()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = torch.relu(x)
        return x


def _hidden_sizes(hidden: int | Sequence[int]) -> tuple[int, ...]:
    sizes = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in sizes):
        raise ValueError(f"hidden must be a positive int or a sequence of positive ints, got {hidden!r}")
    return sizes


@register_model("mlp")
def mlp(input_shape: tuple[int, ...], num_classes: int, *, hidden: int | Sequence[int] = (1000, 1000)) -> MLP:
    """MLP over the flattened input; ``hidden`` gives the hidden widths (empty: logistic regression)."""
    return MLP(math.prod(input_shape), _hidden_sizes(hidden), num_classes)


@register_model("lenet300")
def lenet300(input_shape: tuple[int, ...], num_classes: int) -> MLP:
    """LeNet-300-100 (LeCun et al. 1998): hidden widths 300 and 100."""
    return MLP(math.prod(input_shape), (300, 100), num_classes)
