"""Per-step cost of the sparsifier relative to a training step (issue 2 target: <= 5% at Delta T = 100).

Measures, in one process, the median time of a dense training step (forward, backward, optimizer
step) and of the sparsifier's ``step()`` amortised over update intervals, on an MLP 784-1000-1000-10
(batch 128) and a small CIFAR-style ResNet (batch 64), SGD with momentum.
Usage: python bench/bench_overhead.py [--steps 300] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import sparsetime as st


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(h)) + self.short(x))


def small_resnet(classes: int = 10) -> nn.Module:
    """A CIFAR-style ResNet with 16-32-64 channels (ResNet-20 widths, one block per stage)."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                         Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes))


def measure(name: str, model: nn.Module, shape: tuple[int, ...], batch: int, steps: int, interval: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    sp = st.DynamicSparsity(model, opt, density=0.05, growth="random", update_interval=interval,
                            total_steps=steps, drop_schedule="cosine")
    x = torch.randn(batch, *shape)
    y = torch.randint(0, 10, (batch,))
    train_t, sp_t = [], []
    for i in range(steps + 10):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        t1 = time.perf_counter()
        sp.step()
        t2 = time.perf_counter()
        if i >= 10:
            train_t.append(t1 - t0)
            sp_t.append(t2 - t1)
    step = statistics.median(train_t)
    per_step = statistics.median(sp_t)
    amortised = sum(sp_t) / len(sp_t)
    print(f"{name:<28} train step {step * 1e3:7.2f} ms | sparsifier per step {per_step * 1e3:6.3f} ms "
          f"(median), amortised {amortised * 1e3:6.3f} ms incl. {len(sp.update_history)} updates "
          f"= {100 * amortised / step:5.2f}% of a step")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--interval", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 1000), nn.ReLU(),
                        nn.Linear(1000, 10))
    measure("MLP 784-1000-1000-10, B128", mlp, (784,), 128, args.steps, args.interval)
    measure("CIFAR ResNet (16-32-64), B64", small_resnet(), (3, 32, 32), 64, args.steps, args.interval)


if __name__ == "__main__":
    main()
