"""Sparse 3x3 convolutions against dense ``nn.Conv2d``: forward + input gradient + weight gradient.

Times, in this process and interleaved (dense, then each sparse method, repeated), one training
step of a single layer at the shapes of a CIFAR ResNet-18 (64 channels at 32x32, 128 at 16x16,
256 at 8x8, 512 at 4x4; stride 1 and the stride-2 downsampling convs) and of VGG-16, batch 128,
at densities 0.10 / 0.05 / 0.02 / 0.01, and prints dense time / sparse time. Methods:
``st.nn.SparseConv2d`` (numba direct sparse convolution) from NCHW input and gradient, as after a
dense layer, and from CHWN ones, as between sparse layers (no transposing copies); SparseProp's
``SparseConv2d`` when the ``sparseprop`` package is installed (skipped otherwise), with sparsetime / SparseProp printed;
``--baseline FILE`` also times another copy of ``sparsetime/kernels/_numba_conv.py`` (e.g. the
previous commit's) through the same autograd function, for before/after ratios in one process.

    python bench/bench_conv.py [--shapes targets|resnet18|vgg16|all] [--threads 2] [--reps 7]
        [--batch 128] [--densities 0.1,0.05,0.02,0.01] [--baseline OLD_numba_conv.py]
        [--allocator retain|system]

Targets of the performance issue (128- and 256-channel layers): 2.5x / 4x / 7x / 10x.
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from sparsetime.kernels import conv as conv_module
from sparsetime.kernels import numba_available
from sparsetime.nn import SparseConv2d
from sparsetime.train.allocator import ALLOWED, ENV_VAR, retain_freed_memory

# (in channels, out channels, input size, stride)
RESNET18 = [(64, 64, 32, 1), (64, 128, 32, 2), (128, 128, 16, 1), (128, 256, 16, 2), (256, 256, 8, 1),
            (256, 512, 8, 2), (512, 512, 4, 1)]
VGG16 = [(64, 64, 32, 1), (64, 128, 16, 1), (128, 128, 16, 1), (128, 256, 8, 1), (256, 256, 8, 1),
         (256, 512, 4, 1), (512, 512, 4, 1), (512, 512, 2, 1)]
TARGET_LAYERS = [(128, 128, 16, 1), (256, 256, 8, 1)]
TARGETS = {0.10: 2.5, 0.05: 4.0, 0.02: 7.0, 0.01: 10.0}
SHAPES = {"targets": TARGET_LAYERS, "resnet18": RESNET18, "vgg16": VGG16,
          "all": list(dict.fromkeys(RESNET18 + VGG16))}


def _time(fn: Callable[[], None]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def load_kernels(path: Path):
    """Import a copy of the numba conv kernel module from ``path`` (same function names)."""
    spec = importlib.util.spec_from_file_location("baseline_numba_conv", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # numba's on-disk cache re-imports the module by name
    spec.loader.exec_module(module)
    return _Adapted(module, conv_module._conv_mod())


class _Adapted:
    """The kernels of an older module called with today's arguments (extra trailing ones dropped);
    helpers it does not have (e.g. a pattern decoding it did not need) come from today's module."""

    def __init__(self, module, today) -> None:
        self.module, self.today = module, today

    def __getattr__(self, name: str):
        if not hasattr(self.module, name):
            fn = getattr(self.today, name)
            setattr(self, name, fn)
            return fn
        fn = getattr(self.module, name)
        n_params = len(inspect.signature(getattr(fn, "py_func", fn)).parameters)
        adapted = lambda *args: fn(*args[:n_params])  # noqa: E731
        setattr(self, name, adapted)  # looked up once, not inside the timed steps
        return adapted


def sparseprop_layer(conv: torch.nn.Conv2d):
    """SparseProp's SparseConv2d of ``conv`` (whose weight already holds the sparse pattern), or None."""
    try:
        from sparseprop.modules import SparseConv2d as SPConv
    except ImportError:
        return None
    return SPConv.from_dense(conv)


def bench_layer(c_in: int, c_out: int, size: int, stride: int, batch: int, density: float, reps: int,
                baseline) -> dict[str, float]:
    """Median seconds per fwd+bwd step of each method on one layer."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, c_in, size, size, generator=gen).requires_grad_()
    out = (size + 2 - 3) // stride + 1
    g = torch.randn(batch, c_out, out, out, generator=gen)
    dense = torch.nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
    sparse = SparseConv2d(c_in, c_out, 3, density, stride=stride, padding=1, generator=gen)
    with torch.no_grad():  # the dense twin holds the same pattern (for SparseProp's conversion)
        dense.weight.copy_(sparse.to_dense().view_as(dense.weight))
    kernels = conv_module._conv_mod

    def step(module: torch.nn.Module, params: list[torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            for p in params:
                p.grad = None
            x.grad = None
            module(x).backward(g)
        return run

    methods: dict[str, Callable[[], None]] = {
        "dense": step(dense, [dense.weight, dense.bias]),
        "sparsetime": step(sparse, [sparse.weight_values, sparse.bias]),
    }
    # between sparse layers (and LayoutBatchNorm2d) activations and gradients arrive in the kernels'
    # CHWN layout: the same step without the two transposing copies
    x_chwn = x.detach().permute(1, 2, 3, 0).contiguous().permute(3, 0, 1, 2).requires_grad_()
    g_chwn = g.permute(1, 2, 3, 0).contiguous().permute(3, 0, 1, 2)

    def in_network() -> None:
        sparse.weight_values.grad = sparse.bias.grad = x_chwn.grad = None
        sparse(x_chwn).backward(g_chwn)
    methods["sparsetime, CHWN in/out"] = in_network
    if baseline is not None:
        sparse_step = methods["sparsetime"]

        def with_baseline() -> None:
            conv_module._conv_mod = lambda: baseline
            try:
                sparse_step()
            finally:
                conv_module._conv_mod = kernels
        methods["baseline"] = with_baseline
    sp = sparseprop_layer(dense) if stride == 1 else None
    if sp is not None:
        methods["sparseprop"] = step(sp, [sp.W_val] + ([sp.bias] if sp.bias is not None else []))
    times: dict[str, list[float]] = {k: [] for k in methods}
    for fn in methods.values():
        fn()
        fn()
    for _ in range(reps):
        for name, fn in methods.items():
            times[name].append(_time(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", choices=sorted(SHAPES), default="targets")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--densities", default="0.1,0.05,0.02,0.01")
    ap.add_argument("--baseline", type=Path, help="another _numba_conv.py to time through the same path")
    ap.add_argument("--allocator", choices=list(ALLOWED), default="retain",
                    help="retain: freed memory kept for reuse, as the trainer does; system: glibc's malloc as is")
    args = ap.parse_args()
    os.environ[ENV_VAR] = args.allocator
    retain_freed_memory()
    if not numba_available():
        raise SystemExit("bench_conv needs numba (the sparse conv kernels); pip install numba")
    torch.set_num_threads(args.threads)
    densities = [float(d) for d in args.densities.split(",")]
    baseline = load_kernels(args.baseline) if args.baseline else None
    has_sp = sparseprop_layer(torch.nn.Conv2d(2, 2, 3, padding=1)) is not None
    print(f"threads={torch.get_num_threads()} batch={args.batch} reps={args.reps} allocator={args.allocator} "
          f"torch={torch.__version__} "
          f"sparseprop={'yes' if has_sp else 'not installed'} baseline={args.baseline or '-'}")
    print("| layer | method | " + " | ".join(f"d {d:g}" for d in densities) + " |")
    print("|---|---|" + "---|" * len(densities))
    for c_in, c_out, size, stride in SHAPES[args.shapes]:
        rows: dict[str, list[str]] = {}
        for d in densities:
            t = bench_layer(c_in, c_out, size, stride, args.batch, d, args.reps, baseline)
            rows.setdefault("dense ms", []).append(f"{t['dense'] * 1e3:.1f}")
            for name, v in t.items():
                if name != "dense":
                    rows.setdefault(name, []).append(f"{t['dense'] / v:.2f}x ({v * 1e3:.1f} ms)")
            if "baseline" in t:
                rows.setdefault("sparsetime / baseline", []).append(f"{t['baseline'] / t['sparsetime']:.2f}x")
            if "sparseprop" in t:
                rows.setdefault("sparsetime / sparseprop", []).append(f"{t['sparseprop'] / t['sparsetime']:.2f}x")
        label = f"{c_in}->{c_out} {size}x{size} s{stride}"
        for i, (name, cells) in enumerate(rows.items()):
            print(f"| {label if i == 0 else ''} | {name} | " + " | ".join(cells) + " |")
    print("targets (128/256-channel layers): " + ", ".join(f"d {d:g}: {t}x" for d, t in TARGETS.items()))


if __name__ == "__main__":
    main()
