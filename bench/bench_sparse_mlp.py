"""End-to-end SET-ITOP training of an MLP on Fashion-MNIST: dense vs masked vs truly sparse epoch.

Default: MLP 784-1000-1000-1000-10, batch 128, SGD lr 0.01 nesterov momentum 0.9 wd 5e-4,
2 threads, ER densities at overall density 0.02, SET with random growth, ΔT = 100, cosine drop
fraction 0.5 -> 0.005 (ITOP), topology updates included in the epoch time. The sparse engines are
``DynamicSparsity(execution="masked")`` and ``DynamicSparsity(execution="sparse")`` on the same
dense model and seed. Prints epoch times, test accuracy, Rs, topology-update cost and peak memory,
and the speedups over dense.

The 1M-neuron memory run (784-250000x4-10, ~20 connections per hidden neuron, sparse only):

    python bench/bench_sparse_mlp.py --million --epochs 1

Data: the IDX files of Debian's ``dataset-fashion-mnist`` (``--data`` to point elsewhere).
"""
from __future__ import annotations

import argparse
import math
import resource
import statistics
import time
from pathlib import Path

# Both sides run under the OpenMP wait policy a user gets by default: torch's libgomp with its
# default policy; numba's own libgomp passive (see sparsetime.kernels._numba_impl). Forcing
# OMP_WAIT_POLICY=PASSIVE on torch too made every parallel region pay a thread wake-up and doubled
# the sparse step time here (10.2 ms per step against 6.5); set the variable yourself to compare.
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import sparsetime as st  # noqa: E402
from sparsetime.data.idx import find_idx_file, read_idx  # noqa: E402
from sparsetime.kernels import numba_available  # noqa: E402
from sparsetime.nn import SparseLinear  # noqa: E402

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST training-set pixel statistics


def load_split(folder: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    prefix = "train" if train else "t10k"
    images = read_idx(find_idx_file(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find_idx_file(folder, f"{prefix}-labels-idx1-ubyte"))
    x = (torch.from_numpy(images).float().reshape(len(images), -1) / 255.0 - MEAN) / STD
    return x, torch.from_numpy(labels).long()


def build_dense(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def build_million(sizes: list[int], epsilon: float, gen: torch.Generator) -> nn.Sequential:
    """SparseLinear MLP built sparse from the start (no dense form exists): SET's ER
    parameterisation n_l = epsilon * (in + out)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(SparseLinear(n_in, n_out, min(1.0, epsilon * (n_in + n_out) / (n_in * n_out)), generator=gen))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    correct = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
                  for i in range(0, len(x), batch))
    model.train()
    return correct / len(x)


def train(kind: str, sizes: list[int], data, args, epsilon: float | None = None) -> dict:
    """One engine: "dense" (plain nn.Linear), "masked" / "sparse" (DynamicSparsity execution),
    or "million" (prebuilt SparseLinear layers driven by DynamicSparsity)."""
    (x, y), (xt, yt) = data
    torch.manual_seed(args.seed)
    model = build_million(sizes, epsilon, torch.Generator().manual_seed(args.seed)) if kind == "million" \
        else build_dense(sizes)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps_per_epoch = math.ceil(len(x) / args.batch)
    if args.max_steps:
        steps_per_epoch = min(steps_per_epoch, args.max_steps)
    sp = None
    if kind != "dense":
        t0 = time.perf_counter()
        sp = st.DynamicSparsity(
            model, opt, None if kind == "million" else args.density, distribution=args.distribution,
            growth=args.growth, drop_fraction=0.5, drop_schedule="cosine", min_drop_fraction=0.005,
            update_interval=args.delta_t, total_steps=steps_per_epoch * args.epochs, seed=args.seed,
            execution="masked" if kind == "masked" else "sparse")
        print(f"  [{kind}] sparsifier built in {time.perf_counter() - t0:.1f} s: "
              f"{sum(sp.counts.values()):,} of {sum(math.prod(s) for s in sp.shapes.values()):,} weights "
              f"(density {sp.density():.5f}), layers {sp.layer_execution}", flush=True)
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
            if sp is not None:
                t0 = time.perf_counter()
                if sp.step() is not None:
                    update_times.append(time.perf_counter() - t0)
            if args.log_every and step % args.log_every == 0:
                print(f"  [{kind}] step {step}: {(time.perf_counter() - start) / (b + 1):.3f} s/step", flush=True)
        epoch_times.append(time.perf_counter() - start)
        if not args.skip_eval:
            accs.append(accuracy(model, xt, yt))
        rs = sp.exploration_rate() if sp is not None else 1.0
        print(f"  [{kind}] epoch {epoch + 1}: {epoch_times[-1]:.2f} s"
              + (f", test acc {accs[-1]:.2%}" if accs else "") + (f", Rs {rs:.4g}" if sp else ""), flush=True)
    return {"epoch_s": statistics.median(epoch_times), "acc": accs[-1] if accs else float("nan"),
            "update_ms": 1e3 * statistics.median(update_times) if update_times else 0.0,
            "rs": rs, "density": sp.density() if sp is not None else 1.0}


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
    ap.add_argument("--engines", default="dense,masked,sparse",
                    help="comma-separated subset of dense, masked, sparse (DynamicSparsity execution modes)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    epsilon = None
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if args.skip_dense:
        engines = [e for e in engines if e != "dense"]
    if args.million:
        args.hidden, args.layers, engines, epsilon = 250_000, 4, ["million"], 10.0
        args.log_every = args.log_every or 50
    sizes = [784] + [args.hidden] * args.layers + [10]
    print(f"threads={torch.get_num_threads()} numba={numba_available()} sizes={sizes}")
    data = (load_split(args.data, True), load_split(args.data, False))
    results = {kind: train(kind, sizes, data, args, epsilon) for kind in engines}
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("| engine | density trained | s/epoch | vs dense | test acc | Rs | update ms |")
    print("|---|---|---|---|---|---|---|")
    dense_s = results.get("dense", {}).get("epoch_s")
    for name, r in results.items():
        speed = f"{dense_s / r['epoch_s']:.2f}x" if dense_s else "-"
        print(f"| {name} | {r['density']:.4f} | {r['epoch_s']:.2f} | {speed} | {r['acc']:.2%} | {r['rs']:.4g} | "
              f"{r['update_ms']:.0f} |")
    print(f"peak resident memory: {peak_gib:.2f} GiB")


if __name__ == "__main__":
    main()
