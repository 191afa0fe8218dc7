"""End-to-end SET-ITOP training of an MLP on Fashion-MNIST: dense epoch vs truly sparse epoch.

Default: MLP 784-1000-1000-1000-10, batch 128, SGD lr 0.01 nesterov momentum 0.9 wd 5e-4,
2 threads, ER densities at overall density 0.02, SET with random growth, ΔT = 100, cosine drop
fraction 0.5 -> 0.005 (ITOP), topology updates included in the epoch time. Prints epoch times,
test accuracy, Rs, topology-update cost and peak memory, and the sparse/dense speedup.

The 1M-neuron memory run (784-250000x4-10, ~20 connections per hidden neuron, sparse only):

    python bench/bench_sparse_mlp.py --million --epochs 1

Data: the IDX files of Debian's ``dataset-fashion-mnist`` (``--data`` to point elsewhere).
"""
from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import time
from pathlib import Path

# Both sides run under the same OpenMP policy. Passive waiting: idle OpenMP threads sleep instead
# of spinning, which on a shared 2-core machine would steal the cores the next kernel needs
# (torch's and numba's runtimes are separate thread pools). Set OMP_WAIT_POLICY to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from sparsetime.core.distributions import compute_densities  # noqa: E402
from sparsetime.data.idx import find_idx_file, read_idx  # noqa: E402
from sparsetime.kernels import numba_available  # noqa: E402
from sparsetime.nn import SparseLinear, prune_and_grow  # noqa: E402

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST training-set pixel statistics


def load_split(folder: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    prefix = "train" if train else "t10k"
    images = read_idx(find_idx_file(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find_idx_file(folder, f"{prefix}-labels-idx1-ubyte"))
    x = (torch.from_numpy(images).float().reshape(len(images), -1) / 255.0 - MEAN) / STD
    return x, torch.from_numpy(labels).long()


def build(sizes: list[int], density: float | None, distribution: str, gen: torch.Generator,
          epsilon: float | None = None) -> nn.Sequential:
    """Dense MLP (density None) or SparseLinear MLP with per-layer densities."""
    layers: list[nn.Module] = []
    shapes = {f"l{i}": (o, n) for i, (n, o) in enumerate(zip(sizes[:-1], sizes[1:]))}
    if epsilon is not None:  # SET's ER parameterisation: n_l = epsilon * (in + out)
        dens = {k: min(1.0, epsilon * (i + o) / (i * o)) for k, (o, i) in shapes.items()}
    elif density is not None:
        dens = compute_densities(shapes, density, distribution)
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if density is None and epsilon is None:
            layers.append(nn.Linear(n_in, n_out))
        else:
            layers.append(SparseLinear(n_in, n_out, dens[f"l{i}"], generator=gen))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def drop_fraction(t: int, t_end: int, alpha: float = 0.5, f_min: float = 0.005) -> float:
    """ITOP cosine schedule f(t) = f_min + (alpha - f_min)/2 (1 + cos(pi t / t_end))."""
    return f_min + (alpha - f_min) / 2 * (1 + math.cos(math.pi * min(t, t_end) / t_end))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    correct = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
                  for i in range(0, len(x), batch))
    model.train()
    return correct / len(x)


def train(model: nn.Module, data, args, label: str) -> dict:
    (x, y), (xt, yt) = data
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sparse = [m for m in model if isinstance(m, SparseLinear)]
    fired = [m.flat_indices() for m in sparse]
    n_total = sum(m.in_features * m.out_features for m in sparse) or 1
    gen = torch.Generator().manual_seed(args.seed + 1)
    steps_per_epoch = math.ceil(len(x) / args.batch)
    if args.max_steps:
        steps_per_epoch = min(steps_per_epoch, args.max_steps)
    t_end = steps_per_epoch * args.epochs
    step, epoch_times, update_times, accs = 0, [], [], []
    for epoch in range(args.epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed + epoch))
        start = time.perf_counter()
        for b in range(steps_per_epoch):
            idx = order[b * args.batch:(b + 1) * args.batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if args.log_every and step % args.log_every == 0:
                print(f"  [{label}] step {step}: {(time.perf_counter() - start) / (b + 1):.3f} s/step", flush=True)
            if sparse and step % args.delta_t == 0:
                t0 = time.perf_counter()
                f = drop_fraction(step, t_end)
                for i, m in enumerate(sparse):
                    k = int(math.floor(f * m.nnz + 1e-9))
                    upd = prune_and_grow(m, k, args.growth, gen, opt, fired=fired[i])
                    fired[i] = upd.fired
                update_times.append(time.perf_counter() - t0)
        epoch_times.append(time.perf_counter() - start)
        if not args.skip_eval:
            accs.append(accuracy(model, xt, yt))
        rs = sum(int(f.numel()) for f in fired) / n_total if sparse else 1.0
        print(f"  [{label}] epoch {epoch + 1}: {epoch_times[-1]:.2f} s"
              + (f", test acc {accs[-1]:.2%}" if accs else "") + (f", Rs {rs:.4g}" if sparse else ""),
              flush=True)
    return {"epoch_s": statistics.median(epoch_times), "acc": accs[-1] if accs else float("nan"),
            "update_ms": 1e3 * statistics.median(update_times) if update_times else 0.0,
            "rs": rs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--density", type=float, default=0.02)
    ap.add_argument("--distribution", default="er")
    ap.add_argument("--hidden", type=int, default=1000)
    ap.add_argument("--layers", type=int, default=3, help="number of hidden layers")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--delta-t", type=int, default=100)
    ap.add_argument("--growth", default="random", choices=["random", "unexplored"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=0, help="cap steps per epoch (quick runs)")
    ap.add_argument("--log-every", type=int, default=0, help="print the mean step time every N steps")
    ap.add_argument("--skip-dense", action="store_true")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--million", action="store_true",
                    help="784-250000x4-10 with ~20 connections per hidden neuron, sparse only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    epsilon = None
    if args.million:
        args.hidden, args.layers, args.skip_dense, epsilon = 250_000, 4, True, 10.0
        args.log_every = args.log_every or 50
    sizes = [784] + [args.hidden] * args.layers + [10]
    print(f"threads={torch.get_num_threads()} numba={numba_available()} sizes={sizes}")
    data = (load_split(args.data, True), load_split(args.data, False))
    results = {}
    if not args.skip_dense:
        torch.manual_seed(args.seed)
        results["dense"] = train(build(sizes, None, args.distribution, torch.Generator()), data, args, "dense")
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    model = build(sizes, args.density, args.distribution, gen, epsilon)
    build_s = time.perf_counter() - t0
    sparse = [m for m in model if isinstance(m, SparseLinear)]
    nnz = sum(m.nnz for m in sparse)
    total = sum(m.in_features * m.out_features for m in sparse)
    print(f"sparse model: {nnz:,} weights of {total:,} (density {nnz / total:.5f}), built in {build_s:.1f} s; "
          + ", ".join(f"{m.out_features}x{m.in_features}@{m.density:.4f}" for m in sparse))
    results["sparse"] = train(model, data, args, "sparse")
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("| implementation | density trained | s/epoch | vs dense | test acc | Rs | update ms |")
    print("|---|---|---|---|---|---|---|")
    dense_s = results.get("dense", {}).get("epoch_s")
    for name, r in results.items():
        d = 1.0 if name == "dense" else nnz / total
        speed = f"{dense_s / r['epoch_s']:.2f}x" if dense_s else "-"
        print(f"| {name} | {d:.4f} | {r['epoch_s']:.2f} | {speed} | {r['acc']:.2%} | {r['rs']:.4g} | "
              f"{r['update_ms']:.0f} |")
    print(f"peak resident memory: {peak_gib:.2f} GiB")


if __name__ == "__main__":
    main()
