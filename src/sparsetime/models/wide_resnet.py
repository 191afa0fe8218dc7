"""Wide ResNet (Zagoruyko & Komodakis 2016), CIFAR layout, pre-activation blocks.

Follows the reference implementation used by sparse_learning: stem 3x3 conv to 16 channels,
three groups of (depth - 4) / 6 blocks of widths 16k, 32k, 64k (strides 1, 2, 2), a final
BN-ReLU, global average pooling and a Linear classifier. Blocks are BN-ReLU-conv3x3 twice
(optional dropout between), with a 1x1 conv shortcut when the width changes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .init import init_conv_bn
from .registry import image_shape, register_model


class WideBlock(nn.Module):
    """Pre-activation basic block; a width change shares the first BN-ReLU with the shortcut."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, padding=1, bias=False)
        self.dropout = dropout
        self.shortcut = (
            None
            if in_planes == out_planes and stride == 1
            else nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        out = torch.relu(self.bn2(self.conv1(pre)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    """WRN-depth-k for (C, H, W) inputs."""

    def __init__(self, depth: int, widen: int, in_channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1, got {depth}")
        per_group = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        groups = []
        planes = widths[0]
        for width, stride in zip(widths[1:], (1, 2, 2)):
            blocks = []
            for i in range(per_group):
                blocks.append(WideBlock(planes, width, stride if i == 0 else 1, dropout))
                planes = width
            groups.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(planes)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes, num_classes)
        init_conv_bn(self)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        x = torch.relu(self.bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("wrn22_2")
def wrn22_2(input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0) -> WideResNet:
    """WideResNet-22-2 (3 blocks per group, widths 32/64/128); ``dropout`` inside blocks."""
    channels, _, _ = image_shape(input_shape, "wrn22_2")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return WideResNet(22, 2, channels, num_classes, dropout=float(dropout))
