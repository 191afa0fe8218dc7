"""ResNets: CIFAR layout (3x3 stem, stride 1, no max pool) and ImageNet layout (7x7/2 stem + max pool).

ResNet-18/34 use BasicBlock in the CIFAR layout (as in the RigL/ITOP CIFAR code, 11,173,962
parameters for ResNet-18 with 10 classes); ResNet-50 uses Bottleneck in the ImageNet layout
(torchvision's v1.5, stride on the 3x3 conv; 25,557,032 parameters with 1000 classes).
Downsampling shortcuts are 1x1 conv + BatchNorm. Global adaptive average pooling before the
classifier makes any (C, H, W) input work.
"""
from __future__ import annotations

import torch
from torch import nn

from .init import init_conv_bn
from .registry import image_shape, register_model


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm and an identity / projection shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride), 1x1 expand by 4, with BatchNorm and a shortcut."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = _shortcut(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Four stages of widths 64/128/256/512 (times the block expansion), strides 1/2/2/2."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        blocks_per_stage: tuple[int, int, int, int],
        in_channels: int,
        num_classes: int,
        imagenet_stem: bool,
    ) -> None:
        super().__init__()
        if imagenet_stem:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(64)
        planes_in = 64
        stages = []
        for planes, count, stride in zip((64, 128, 256, 512), blocks_per_stage, (1, 2, 2, 2)):
            layers = []
            for i in range(count):
                layers.append(block(planes_in, planes, stride if i == 0 else 1))
                planes_in = planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes_in, num_classes)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("resnet18")
def resnet18(input_shape: tuple[int, ...], num_classes: int) -> ResNet:
    """CIFAR ResNet-18 (BasicBlock, 2-2-2-2)."""
    channels, _, _ = image_shape(input_shape, "resnet18")
    return ResNet(BasicBlock, (2, 2, 2, 2), channels, num_classes, imagenet_stem=False)


@register_model("resnet34")
def resnet34(input_shape: tuple[int, ...], num_classes: int) -> ResNet:
    """CIFAR ResNet-34 (BasicBlock, 3-4-6-3)."""
    channels, _, _ = image_shape(input_shape, "resnet34")
    return ResNet(BasicBlock, (3, 4, 6, 3), channels, num_classes, imagenet_stem=False)


@register_model("resnet50")
def resnet50(input_shape: tuple[int, ...], num_classes: int) -> ResNet:
    """ImageNet ResNet-50 (Bottleneck, 3-4-6-3, 7x7/2 stem and max pool)."""
    channels, _, _ = image_shape(input_shape, "resnet50")
    return ResNet(Bottleneck, (3, 4, 6, 3), channels, num_classes, imagenet_stem=True)
