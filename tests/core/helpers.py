"""Small models and training loops shared by the core tests."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualConvNet(nn.Module):
    """Conv2d + BatchNorm + a residual connection + Linear head."""

    def __init__(self, channels: int = 8, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.stem(x)))
        h = F.relu(h + self.bn2(self.conv(h)))
        return self.head(h.mean(dim=(2, 3)))


class Conv1d3dNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(2, 6, 3)
        self.c3 = nn.Conv3d(1, 4, 2)
        self.fc = nn.Linear(6 + 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.c1(x[:, :2, :, 0, 0]).mean(-1)
        b = self.c3(x[:, 2:3]).mean(dim=(2, 3, 4))
        return self.fc(torch.cat([a, b], 1))


def mlp(sizes=(20, 30, 30, 5)) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def make_model(kind: str) -> tuple[nn.Module, tuple[int, ...], int]:
    """(model, input shape without batch, classes)."""
    if kind == "mlp":
        return mlp(), (20,), 5
    if kind == "resconv":
        return ResidualConvNet(), (3, 8, 8), 5
    if kind == "conv13":
        return Conv1d3dNet(), (3, 5, 4, 4), 3
    raise ValueError(kind)


def make_optimizer(name: str, params) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.05)
    if name == "sgd_momentum_wd":
        return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
    if name == "nesterov":
        return torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-2, weight_decay=1e-4)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    raise ValueError(name)


OPTIMIZERS = ["sgd", "sgd_momentum_wd", "nesterov", "adam", "adamw"]


def train_steps(model, optimizer, sparsifier, steps, input_shape, classes, seed=0, on_step=None):
    """Plain loop: backward -> optimizer.step -> sparsifier.step. Returns the losses."""
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        x = torch.randn(8, *input_shape, generator=g)
        y = torch.randint(0, classes, (8,), generator=g)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        before = {n: m.clone() for n, m in sparsifier.masks.items()}
        stats = sparsifier.step()
        if on_step is not None:
            on_step(before, stats)
        losses.append(loss.item())
    return losses
