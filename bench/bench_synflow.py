"""Time iterative SynFlow (100 rounds, double precision) on a CIFAR ResNet-18.

Prints the wall time of the full procedure and of one round, and ratios to two dense float32
training steps measured in the same process: a ResNet-18 step at batch 128, and the reference
step of BENCHMARKS.md (MLP 784-1000-1000-1000-10, batch 128, SGD nesterov, 2 threads: 11.4-11.9 s
per 469-step epoch, i.e. ~24.8 ms per step on a quiet machine). On a shared machine wall times
are inflated; the MLP ratio gives an estimate for a quiet one. Target: under 2 minutes on 2 cores.

    python bench/bench_synflow.py [--rounds 100] [--density 0.1] [--threads 2] [--scope global]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

import sparsetime.pruning as pruning


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class _ResNet18(nn.Module):
    """CIFAR ResNet-18 (3x3 stem, no max-pool), used when sparsetime.models is not available."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [_Block(cin, cout, stride), _Block(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def build_resnet18() -> tuple[nn.Module, str]:
    """sparsetime.models' ResNet-18 if that package exists, else the local definition."""
    try:
        from sparsetime.models import build_model  # type: ignore[import-not-found]

        return build_model("resnet18", (3, 32, 32), 10), "sparsetime.models"
    except ImportError:
        return _ResNet18(10), "local definition"


def dense_step_seconds(model: nn.Module, repeats: int = 3) -> float:
    """Median time of one float32 SGD training step at batch 128 on random CIFAR-shaped data."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return sorted(times[1:])[len(times[1:]) // 2]


REFERENCE_MLP_STEP_S = 11.65 / 469  # BENCHMARKS.md: dense MLP epoch 11.4-11.9 s, 469 steps of 128


def mlp_step_seconds(steps: int = 15) -> float:
    """Median time of one step of the BENCHMARKS.md reference MLP (SGD nesterov, wd 5e-4, batch 128)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 1000), nn.ReLU(),
                          nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))
    times = []
    for _ in range(steps + 2):
        t0 = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    times = sorted(times[2:])
    return times[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--density", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scope", default="global", choices=["global", "layer"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, source = build_resnet18()
    n_sparse = sum(p.numel() for p in pruning.scores(model, "magnitude").values())
    step = dense_step_seconds(model)
    mlp_before = mlp_step_seconds()
    t0, c0 = time.perf_counter(), time.process_time()
    masks = pruning.prune(model, "synflow", args.density, input_shape=(3, 32, 32), rounds=args.rounds,
                          scope=args.scope, seed=0, allow_collapse=True)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    empty = [n for n, m in masks.items() if not bool(m.any())]
    mlp = (mlp_before + mlp_step_seconds()) / 2
    density = pruning.mask_density(masks)
    print(f"ResNet-18 ({source}), {n_sparse:,} sparsifiable weights, {args.threads} threads")
    print(f"SynFlow {args.rounds} rounds (float64, scope {args.scope}) to density {args.density}: "
          f"realised {density:.6f}")
    print(f"  process CPU time {cpu:.1f} s over {args.threads} threads (wall {total:.1f} s; on a quiet machine "
          f"wall is about CPU time / threads when the threads stay busy)")
    print(f"  layers collapsed: {empty if empty else 'none'}")
    print(f"  total {total:.1f} s ({'under' if total < 120 else 'OVER'} the 120 s target), "
          f"{total / args.rounds * 1000:.0f} ms per round")
    print(f"  = {total / step:.1f} dense float32 training steps at batch 128 ({step * 1000:.0f} ms each); "
          f"one round = {total / args.rounds / step:.2f} steps")
    print(f"  = {total / mlp:.0f} reference MLP steps ({mlp * 1000:.1f} ms each here, "
          f"{REFERENCE_MLP_STEP_S * 1000:.1f} ms on a quiet machine): "
          f"estimated {total / mlp * REFERENCE_MLP_STEP_S:.0f} s on a quiet 2-core machine")


if __name__ == "__main__":
    main()
