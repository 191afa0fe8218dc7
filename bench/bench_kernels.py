"""Per-layer speed of sparse execution vs dense torch: forward + grad input + grad weight.

Prints a markdown table of speedups (dense time / method time), all measured in this process
with interleaved repetitions, for the layers of the issue (4096x4096 batch 256, 3072x1000 batch
128) at 90/95/98/99% sparsity. Methods: masked dense (W * mask through F.linear), sparsetime with
the numba kernels, sparsetime with the pure-torch fallback. ``--conv`` adds 3x3 convolutions
(direct sparse convolution vs ``nn.Conv2d``); ``--chain`` adds two-layer chains
Linear -> ReLU -> Linear (in -> out -> out) where the hidden activation and its gradient stay
features-major between the sparse layers. Usage:

    python bench/bench_kernels.py [--threads 2] [--reps 7] [--quick] [--conv] [--chain] [--stat min]

``--stat min`` reports the fastest repetition of each method instead of the median: on a shared
machine it estimates the uncontended time of both sides.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

# Both sides run under the OpenMP wait policy a user gets by default (torch's libgomp default,
# numba's libgomp passive, see sparsetime.kernels._numba_impl); set OMP_WAIT_POLICY to compare.

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from sparsetime.kernels import numba_available  # noqa: E402
from sparsetime.nn import SparseConv2d, SparseLinear  # noqa: E402

LAYERS = [(4096, 4096, 256), (3072, 1000, 128)]  # (in, out, batch)
CONVS = [(64, 64, 32, 64), (128, 128, 16, 128), (256, 256, 8, 128)]  # (in, out, size, batch)
SPARSITIES = [0.90, 0.95, 0.98, 0.99]
STAT = {"median": statistics.median, "min": min}
_stat = statistics.median


def _step_dense(lin: torch.nn.Linear, x: torch.Tensor, g: torch.Tensor) -> None:
    lin.weight.grad = lin.bias.grad = x.grad = None
    lin(x).backward(g)


def _step_masked(w: torch.Tensor, mask: torch.Tensor, b: torch.Tensor, x: torch.Tensor,
                 g: torch.Tensor) -> None:
    w.grad = b.grad = x.grad = None
    F.linear(x, w * mask, b).backward(g)


def _step_sparse(layer: SparseLinear, x: torch.Tensor, g: torch.Tensor) -> None:
    layer.weight_values.grad = layer.bias.grad = x.grad = None
    layer(x).backward(g)


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_layer(in_f: int, out_f: int, batch: int, sparsity: float, reps: int) -> dict[str, float]:
    """Median seconds per fwd+bwd step for each method (interleaved repetitions)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, in_f, generator=gen).requires_grad_()
    g = torch.randn(batch, out_f, generator=gen)
    lin = torch.nn.Linear(in_f, out_f)
    methods = {"dense": lambda: _step_dense(lin, x, g)}
    sp = SparseLinear(in_f, out_f, 1.0 - sparsity, generator=gen)
    mask = sp.to_dense().detach() != 0
    w = sp.to_dense().detach().requires_grad_()
    b = sp.bias.detach().clone().requires_grad_()
    methods["masked dense"] = lambda: _step_masked(w, mask, b, x, g)
    if numba_available():
        sp_n = SparseLinear.from_dense(lin, mask, backend="numba")
        methods["sparsetime numba"] = lambda: _step_sparse(sp_n, x, g)
    sp_t = SparseLinear.from_dense(lin, mask, backend="torch")
    methods["sparsetime torch"] = lambda: _step_sparse(sp_t, x, g)
    times: dict[str, list[float]] = {k: [] for k in methods}
    for fn in methods.values():  # warm-up (JIT compile, allocator)
        fn()
        fn()
    for _ in range(reps):
        for name, fn in methods.items():
            times[name].append(_time(fn))
    return {k: _stat(v) for k, v in times.items()}


def bench_chain(in_f: int, out_f: int, batch: int, sparsity: float, reps: int) -> dict[str, float]:
    """Seconds per fwd+bwd step of Linear -> ReLU -> Linear (in -> out -> out): dense vs sparse."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, in_f, generator=gen).requires_grad_()
    g = torch.randn(batch, out_f, generator=gen)
    dense = torch.nn.Sequential(torch.nn.Linear(in_f, out_f), torch.nn.ReLU(), torch.nn.Linear(out_f, out_f))
    methods = {"dense": dense}
    if numba_available():
        methods["sparsetime numba"] = torch.nn.Sequential(
            SparseLinear(in_f, out_f, 1.0 - sparsity, generator=gen, backend="numba"), torch.nn.ReLU(),
            SparseLinear(out_f, out_f, 1.0 - sparsity, generator=gen, backend="numba"))

    def step(model: torch.nn.Module) -> None:
        model.zero_grad(set_to_none=True)
        x.grad = None
        model(x).backward(g)

    times: dict[str, list[float]] = {k: [] for k in methods}
    for m in methods.values():
        step(m)
        step(m)
    for _ in range(reps):
        for name, m in methods.items():
            times[name].append(_time(lambda: step(m)))
    return {k: _stat(v) for k, v in times.items()}


def bench_conv(c_in: int, c_out: int, size: int, batch: int, sparsity: float, reps: int) -> dict[str, float]:
    """Median seconds per fwd+bwd step: nn.Conv2d vs SparseConv2d (numba), 3x3, padding 1."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, c_in, size, size, generator=gen).requires_grad_()
    g = torch.randn(batch, c_out, size, size, generator=gen)
    conv = torch.nn.Conv2d(c_in, c_out, 3, padding=1)
    sp = SparseConv2d(c_in, c_out, 3, 1.0 - sparsity, padding=1, generator=gen)

    def dense() -> None:
        conv.weight.grad = conv.bias.grad = x.grad = None
        conv(x).backward(g)

    def sparse() -> None:
        sp.weight_values.grad = sp.bias.grad = x.grad = None
        sp(x).backward(g)

    methods = {"dense": dense, "sparsetime numba": sparse}
    times: dict[str, list[float]] = {k: [] for k in methods}
    for fn in methods.values():
        fn()
    for _ in range(reps):
        for name, fn in methods.items():
            times[name].append(_time(fn))
    return {k: _stat(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="only 98%% and 99%% sparsity")
    ap.add_argument("--conv", action="store_true", help="also benchmark 3x3 convolutions (numba only)")
    ap.add_argument("--chain", action="store_true", help="also benchmark Linear-ReLU-Linear chains")
    ap.add_argument("--no-linear", action="store_true", help="skip the linear layers")
    ap.add_argument("--stat", choices=sorted(STAT), default="median", help="statistic over repetitions")
    args = ap.parse_args()
    global _stat
    _stat = STAT[args.stat]
    torch.set_num_threads(args.threads)
    sparsities = SPARSITIES[2:] if args.quick else SPARSITIES
    print(f"threads={torch.get_num_threads()} numba={numba_available()} torch={torch.__version__} "
          f"stat={args.stat} reps={args.reps} OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    print("| layer | method | " + " | ".join(f"{s:.0%}" for s in sparsities) + " |")
    print("|---|---|" + "---|" * len(sparsities))
    for in_f, out_f, batch in ([] if args.no_linear else LAYERS):
        rows: dict[str, list[str]] = {}
        dense_ms = []
        for s in sparsities:
            t = bench_layer(in_f, out_f, batch, s, args.reps)
            dense_ms.append(f"{t['dense'] * 1e3:.1f}")
            for name, v in t.items():
                if name != "dense":
                    rows.setdefault(name, []).append(f"{t['dense'] / v:.1f}x ({v * 1e3:.1f} ms)")
        label = f"{in_f}x{out_f}, B {batch}"
        print(f"| {label} | dense ms | " + " | ".join(dense_ms) + " |")
        for name, cells in rows.items():
            print(f"| | {name} | " + " | ".join(cells) + " |")

    if args.chain and numba_available():
        for in_f, out_f, batch in LAYERS:
            cells, dense_ms = [], []
            for s in sparsities:
                t = bench_chain(in_f, out_f, batch, s, args.reps)
                dense_ms.append(f"{t['dense'] * 1e3:.1f}")
                cells.append(f"{t['dense'] / t['sparsetime numba']:.1f}x ({t['sparsetime numba'] * 1e3:.1f} ms)")
            label = f"chain {in_f}-{out_f}-{out_f}, B {batch}"
            print(f"| {label} | dense ms | " + " | ".join(dense_ms) + " |")
            print("| | sparsetime numba | " + " | ".join(cells) + " |")

    if args.conv and numba_available():
        for c_in, c_out, size, batch in CONVS:
            cells, dense_ms = [], []
            for s in sparsities:
                t = bench_conv(c_in, c_out, size, batch, s, args.reps)
                dense_ms.append(f"{t['dense'] * 1e3:.1f}")
                cells.append(f"{t['dense'] / t['sparsetime numba']:.1f}x ({t['sparsetime numba'] * 1e3:.1f} ms)")
            label = f"conv3x3 {c_in}->{c_out}, {size}x{size}, B {batch}"
            print(f"| {label} | dense ms | " + " | ".join(dense_ms) + " |")
            print("| | sparsetime numba | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

