"""Per-step cost of the sparsifier relative to a training step (issue 2 target: <= 5% at Delta T = 100).

Times, in one process and interleaved, a plain training step (forward, backward, SGD with momentum)
and the same step of a twin model under ``DynamicSparsity`` (density 0.05, SET, cosine), on an MLP
784-1000-1000-10 (batch 128) and a small CIFAR-style ResNet (batch 64). Reports the median step
overhead and the mean overhead including the topology updates.
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


def measure(name: str, build, shape: tuple[int, ...], batch: int, steps: int, interval: int) -> None:
    """Alternate steps of a plain loop and a sparsified loop on twin models; compare their times.

    The sparsifier's cost sits partly inside ``backward()`` (the gradient-masking hook) and partly in
    ``step()``, so the whole training step is timed for both twins, interleaved to share the noise.
    """
    torch.manual_seed(0)
    plain, sparse = build(), build()
    opt_plain = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    opt_sparse = torch.optim.SGD(sparse.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    sp = st.DynamicSparsity(sparse, opt_sparse, density=0.05, growth="random", update_interval=interval,
                            total_steps=steps + 10, drop_schedule="cosine")
    x = torch.randn(batch, *shape)
    y = torch.randint(0, 10, (batch,))

    def one(model, opt, sparsifier=None) -> float:
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sparsifier is not None:
            sparsifier.step()
        return time.perf_counter() - t0

    plain_t, sparse_t = [], []
    for i in range(steps + 10):
        a, b = one(plain, opt_plain), one(sparse, opt_sparse, sp)
        if i >= 10:
            plain_t.append(a)
            sparse_t.append(b)
    med_plain, med_sparse = statistics.median(plain_t), statistics.median(sparse_t)
    mean_plain, mean_sparse = sum(plain_t) / len(plain_t), sum(sparse_t) / len(sparse_t)
    print(f"{name:<30} plain step {med_plain * 1e3:7.2f} ms | with sparsifier {med_sparse * 1e3:7.2f} ms "
          f"(median: {100 * (med_sparse / med_plain - 1):+5.1f}%) | mean incl. {len(sp.update_history)} "
          f"updates: {100 * (mean_sparse / mean_plain - 1):+5.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--interval", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    def mlp() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 1000), nn.ReLU(),
                             nn.Linear(1000, 10))

    measure("MLP 784-1000-1000-10, B128", mlp, (784,), 128, args.steps, args.interval)
    measure("CIFAR ResNet (16-32-64), B64", small_resnet, (3, 32, 32), 64, args.steps, args.interval)


if __name__ == "__main__":
    main()
