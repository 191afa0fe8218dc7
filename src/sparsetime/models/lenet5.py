"""LeNet-5 in the Caffe variant used by the pruning and sparse-training literature.

conv 5x5 (20) -> maxpool 2 -> conv 5x5 (50) -> maxpool 2 -> fc 500 -> fc classes, no padding,
as in SNIP and sparse_learning's ``LeNet_5_Caffe`` (431,080 parameters on 1x28x28, 10 classes).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import image_shape, register_model


class LeNet5(nn.Module):
    """Caffe LeNet-5; the flatten size follows from the input height and width."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        channels, height, width = input_shape
        out_h, out_w = (((height - 4) // 2) - 4) // 2, (((width - 4) // 2) - 4) // 2
        if out_h < 1 or out_w < 1:
            raise ValueError(f"lenet5 needs inputs of at least 12x12 pixels, got {height}x{width}")
        self.conv1 = nn.Conv2d(channels, 20, 5)
        self.pool1 = nn.MaxPool2d(2)  # modules, not F.max_pool2d: sparse execution swaps them for
        self.conv2 = nn.Conv2d(20, 50, 5)  # pools that keep its CHWN layout (sparsetime.nn.layout_pool)
        self.pool2 = nn.MaxPool2d(2)
        self.fc3 = nn.Linear(50 * out_h * out_w, 500)
        self.fc4 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = F.relu(self.fc3(torch.flatten(x, 1)))
        return self.fc4(x)


@register_model("lenet5")
def lenet5(input_shape: tuple[int, ...], num_classes: int) -> LeNet5:
    """Caffe LeNet-5 for (C, H, W) inputs of at least 12x12."""
    return LeNet5(image_shape(input_shape, "lenet5"), num_classes)
