"""VGG-16 for CIFAR as in the SNIP / sparse_learning / ITOP code (config D with BatchNorm).

Features: 64,64,M,128,128,M,256x3,M,512x3,M,512x3,M with conv(bias)-BN-ReLU; classifier:
Linear 512-512, ReLU, BN, Linear 512-512, ReLU, BN, Linear 512-classes. Max pools use
``ceil_mode`` so inputs smaller than 32x32 (e.g. 28x28) still work; on even sizes this equals
the usual floor mode. An adaptive average pool makes the classifier input 512 for any size.
"""
from __future__ import annotations

import torch
from torch import nn

from .init import init_conv_bn
from .registry import image_shape, register_model

VGG16_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)


class VGG(nn.Module):
    """VGG with BatchNorm and the 512-wide CIFAR classifier."""

    def __init__(self, config: tuple[int | str, ...], in_channels: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
            else:
                width = int(item)
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(channels, 512),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(512),
            nn.Linear(512, 512),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(512),
            nn.Linear(512, num_classes),
        )
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(self.features(x)), 1)
        return self.classifier(x)


@register_model("vgg16")
def vgg16(input_shape: tuple[int, ...], num_classes: int) -> VGG:
    """CIFAR VGG-16 (config D, BatchNorm) for any (C, H, W) input."""
    channels, _, _ = image_shape(input_shape, "vgg16")
    return VGG(VGG16_CONFIG, channels, num_classes)
