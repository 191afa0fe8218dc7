"""End to end: a CNN training step (CIFAR ResNet-18, VGG-16, WRN-22-2; LeNet-5), dense vs sparse, on 2 threads.

The dense model and its sparse twin (the same model and seed, driven by
``DynamicSparsity(execution=...)``: SET, ERK, sparse-aware init; BN layers dense) take turns, step
by step, on one random batch shaped like the model's data (CIFAR-10's 3x32x32; Fashion-MNIST's
1x28x28 for LeNet-5; 10 classes). A step is forward, backward,
SGD (momentum 0.9, weight decay 5e-4) and ``sparsifier.step()``. Topology updates run every
``--every`` steps here; their extra cost is charged at the runner's ΔT (``--delta-t``, 200), so
``amortised = median step + (median update step - median step) / ΔT``. Prints per-step times, the
update cost, which layers run sparse, and dense / sparse ratios.

    python bench/bench_cnn.py [--model resnet18|vgg16|wrn22_2|lenet5|both|all] [--steps 6] [--batch 128] [--threads 2]
        [--density 0.05] [--execution sparse|auto|masked] [--allocator retain|system] [--eval 1,8,32,128]

``--eval 1,8,32`` times inference instead (eval mode, no gradients; ``--steps`` repetitions, at
least 5) at those batch sizes: a sparse convolution serves small batches on small maps through its
dense path (``sparsetime.kernels.heuristics.dense_conv_call_faster``).

``--allocator retain`` (the default) keeps freed memory for reuse as the trainer does
(:mod:`sparsetime.train.allocator`); ``system`` leaves glibc's malloc as it is, whose fresh mmap
per activation-sized tensor costs page faults every step in both models.

Targets of the performance issue: ResNet-18 at density 0.05 >= 2x, VGG-16 at 0.02 >= 3x (``both``, the
default, runs these two). WRN-22-2 and LeNet-5 (density 0.05) check ``execution="auto"`` on small
convolutions (16-50 channels), which it once left masked.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import sparsetime as st
from sparsetime.models import build_model
from sparsetime.nn import SparseConv2d, SparseLinear
from sparsetime.train.allocator import ALLOWED, ENV_VAR, retain_freed_memory

DEFAULT_DENSITY = {"resnet18": 0.05, "vgg16": 0.02, "wrn22_2": 0.05, "lenet5": 0.05}
#: input (C, H, W) of each model: CIFAR-10, and Fashion-MNIST for LeNet-5
INPUT_SHAPE = {"resnet18": (3, 32, 32), "vgg16": (3, 32, 32), "wrn22_2": (3, 32, 32), "lenet5": (1, 28, 28)}
TARGET = {"resnet18": 2.0, "vgg16": 3.0}


def _step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
          sparsifier: st.DynamicSparsity | None = None) -> float:
    t0 = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if sparsifier is not None:
        sparsifier.step()
    return time.perf_counter() - t0


def _twins(name: str) -> tuple[nn.Module, nn.Module]:
    """The model twice, from the same seed (one stays dense, the other gets the sparsifier)."""
    torch.manual_seed(0)
    dense = build_model(name, INPUT_SHAPE[name], 10)
    torch.manual_seed(0)
    return dense, build_model(name, INPUT_SHAPE[name], 10)


def measure_eval(name: str, density: float, batches: list[int], reps: int, execution: str) -> None:
    """Inference (eval mode, no gradients) of the dense model and its sparse twin, interleaved, per batch size."""
    dense, sparse = _twins(name)
    dense.eval()
    st.DynamicSparsity(sparse, torch.optim.SGD(sparse.parameters(), lr=0.1), density=density, distribution="erk",
                       update_interval=None, execution=execution)
    sparse.eval()
    gen = torch.Generator().manual_seed(0)
    for batch in batches:
        x = torch.randn(batch, *INPUT_SHAPE[name], generator=gen)
        times: dict[str, list[float]] = {"dense": [], "sparse": []}
        with torch.no_grad():
            for _ in range(2):  # warm-up
                dense(x), sparse(x)
            for _ in range(reps):
                for key, model in (("dense", dense), ("sparse", sparse)):
                    t0 = time.perf_counter()
                    model(x)
                    times[key].append(time.perf_counter() - t0)
        d, s = statistics.median(times["dense"]), statistics.median(times["sparse"])
        print(f"{name}, density {density:g}, eval batch {batch}, execution {execution}: dense {d * 1e3:.1f} ms | "
              f"sparse {s * 1e3:.1f} ms | **{d / s:.2f}x**")


def measure(name: str, density: float, batch: int, steps: int, every: int, delta_t: int, execution: str) -> None:
    dense, sparse = _twins(name)
    opt_dense = torch.optim.SGD(dense.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt_sparse = torch.optim.SGD(sparse.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sp = st.DynamicSparsity(sparse, opt_sparse, density=density, distribution="erk", growth="random",
                            update_interval=every, total_steps=10 * every * (steps + 2), execution=execution)
    kinds = [type(m).__name__ for m in sparse.modules() if isinstance(m, (SparseConv2d, SparseLinear))]
    masked = sum(1 for _ in sp.masks) - len(kinds) if hasattr(sp, "masks") else None
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *INPUT_SHAPE[name], generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    for _ in range(2):  # warm-up (numba compilation, allocator)
        _step(dense, opt_dense, x, y)
        _step(sparse, opt_sparse, x, y, sp)
    dense_t, sparse_t, update_t = [], [], []
    n = 0
    while len(update_t) < max(1, steps // every) or len(sparse_t) < steps:
        dense_t.append(_step(dense, opt_dense, x, y))
        before = len(sp.update_history)
        t = _step(sparse, opt_sparse, x, y, sp)
        (update_t if len(sp.update_history) > before else sparse_t).append(t)
        n += 1
    d, s = statistics.median(dense_t), statistics.median(sparse_t)
    u = statistics.median(update_t) - s
    amortised = s + u / delta_t
    target = f" (target {TARGET[name]}x)" if name in TARGET else ""
    print(f"{name}, density {density:g}, batch {batch}, execution {execution}: {len(kinds)} sparse layers "
          f"({', '.join(sorted(set(kinds)))}), {masked if masked is not None else '?'} masked")
    print(f"  dense step {d * 1e3:.0f} ms | sparse step {s * 1e3:.0f} ms ({d / s:.2f}x) | topology update "
          f"+{u * 1e3:.0f} ms | amortised at ΔT {delta_t}: {amortised * 1e3:.0f} ms, "
          f"**{d / amortised:.2f}x**{target} [{n} steps each]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=[*INPUT_SHAPE, "both", "all"], default="both",
                    help="both: the two target models (resnet18, vgg16); all: every model here")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--every", type=int, default=4, help="a topology update every this many steps here")
    ap.add_argument("--delta-t", type=int, default=200, help="the update interval the cost is charged at")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--density", type=float, help="default: 0.05 for resnet18, 0.02 for vgg16")
    ap.add_argument("--execution", choices=["sparse", "auto", "masked"], default="auto")
    ap.add_argument("--allocator", choices=list(ALLOWED), default="retain",
                    help="retain: freed memory kept for reuse, as the trainer does; system: glibc's malloc as is")
    ap.add_argument("--eval", metavar="BATCHES",
                    help="time inference instead, at these comma-separated batch sizes (e.g. 1,8,32,128)")
    args = ap.parse_args()
    os.environ[ENV_VAR] = args.allocator
    retained = retain_freed_memory()
    torch.set_num_threads(args.threads)
    print(f"threads={torch.get_num_threads()} torch={torch.__version__} allocator={args.allocator} "
          f"(freed memory kept: {retained})")
    names = {"both": ["resnet18", "vgg16"], "all": list(INPUT_SHAPE)}.get(args.model, [args.model])
    for name in names:
        density = args.density or DEFAULT_DENSITY[name]
        if args.eval:
            measure_eval(name, density, [int(b) for b in args.eval.split(",")], max(args.steps, 5), args.execution)
        else:
            measure(name, density, args.batch, args.steps, args.every, args.delta_t, args.execution)


if __name__ == "__main__":
    main()
