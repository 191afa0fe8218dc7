"""Standard initialisation shared by the conv nets (the scheme of torchvision's ResNet)."""
from __future__ import annotations

from torch import nn


def init_conv_bn(model: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) conv weights, zero conv biases, BatchNorm weight 1 / bias 0.

    Linear layers keep PyTorch's default initialisation, as in torchvision.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
