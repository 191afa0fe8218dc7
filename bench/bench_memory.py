"""Memory held by the sparse layers, dense vs masked vs truly sparse, at density 0.02.

For the runner's default MLP (784-1000-1000-10) and a GPT-style decoder (6 layers, d_model 512,
8 heads, FFN 2048, vocabulary 4096), after one training step, counts the bytes of the live tensors
of the layers the sparsifier manages (biases and embeddings excluded, they are dense in every
engine):

* weights: the dense weight (dense, masked) or ``weight_values`` plus every CSR index buffer
  (sparse); the masked engine's boolean masks are listed on their own line;
* gradients: ``.grad`` of those tensors;
* optimizer state: every tensor the optimizer holds for them (SGD momentum; Adam exp_avg and
  exp_avg_sq), counted from ``optimizer.state``, not from a formula.

Then the peak resident memory (``VmHWM`` on Linux, else ``ru_maxrss``) of a short default job
(``sparsetime train`` defaults: SET, MLP, Fashion-MNIST, density 0.02; ``epochs=1
data.train_subset=4096``) run in a fresh subprocess per engine, with the trainer's allocator setting
(freed memory kept for reuse) and, for masked and sparse, with ``SPARSETIME_ALLOCATOR=system``. Needs the Fashion-MNIST files for that part (``--skip-rss`` to leave it out).

    python bench/bench_memory.py [--density 0.02] [--skip-rss]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import sparsetime as st
from sparsetime.models import build_model
from sparsetime.models.decoder import Decoder, lm_loss
from sparsetime.nn import SparseModule

MiB = 2.0 ** 20


def _nbytes(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


def held_bytes(model: nn.Module, optimizer: torch.optim.Optimizer, names: list[str]) -> dict[str, int]:
    """Bytes of weights (+ indices), gradients, optimizer state and masks of the layers ``names``."""
    out = {"weights": 0, "gradients": 0, "optimizer": 0, "masks": 0}
    for name in names:
        module = model.get_submodule(name.rpartition(".")[0])
        if isinstance(module, SparseModule):
            p = module.weight_values
            out["weights"] += _nbytes(p) + sum(_nbytes(b) for b in module.buffers(recurse=False))
        else:
            p = module.weight
            out["weights"] += _nbytes(p)
        out["gradients"] += _nbytes(p.grad)
        out["optimizer"] += sum(_nbytes(v) for v in optimizer.state.get(p, {}).values()
                                if isinstance(v, torch.Tensor) and v.dim() > 0)
    return out


def _optimizer(name: str, model: nn.Module) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    return torch.optim.Adam(model.parameters(), lr=1e-3)


def _mlp() -> tuple[nn.Module, callable]:
    model = build_model("mlp", (1, 28, 28), 10)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    return model, lambda m: F.cross_entropy(m(x), y)


def _decoder() -> tuple[nn.Module, callable]:
    model = Decoder()
    tokens = torch.randint(0, 4096, (2, 129))
    return model, lambda m: lm_loss(m, tokens)


def measure(build, engine: str, optim: str, density: float, names: list[str]) -> dict[str, int]:
    """Bytes held after one training step of ``engine`` (dense: no sparsifier at all)."""
    torch.manual_seed(0)
    model, loss_fn = build()
    opt = _optimizer(optim, model)
    sp = None
    if engine != "dense":
        sp = st.DynamicSparsity(model, opt, density=density, distribution="erk", update_interval=100,
                                total_steps=1000, execution=engine)
        assert sp.layer_names == names and set(sp.layer_execution.values()) == {engine}
    loss_fn(model).backward()
    opt.step()
    if sp is not None:
        sp.step()
    result = held_bytes(model, opt, names)
    if engine == "masked":
        result["masks"] = sum(_nbytes(sp.masks[n]) for n in names)
    return result


def print_table(label: str, build, density: float) -> None:
    print(f"\n{label}, density {density} (ERK), bytes of the sparsified layers' weights after one step")
    print(f"{'optimizer':9s} {'engine':7s} {'weights':>10s} {'grads':>10s} {'opt state':>10s} {'masks':>9s} "
          f"{'total MiB':>10s} {'/ dense':>8s}")
    model, _ = build()
    names = st.DynamicSparsity(model, _optimizer("sgd", model), density=density, distribution="erk",
                                 update_interval=None).layer_names
    for optim in ("sgd", "adam"):
        dense_total = None
        for engine in ("dense", "masked", "sparse"):
            r = measure(build, engine, optim, density, names)
            total = sum(r.values())
            dense_total = dense_total or total
            print(f"{optim:9s} {engine:7s} {r['weights'] / MiB:10.2f} {r['gradients'] / MiB:10.2f} "
                  f"{r['optimizer'] / MiB:10.2f} {r['masks'] / MiB:9.2f} {total / MiB:10.2f} "
                  f"{total / dense_total:8.3f}")


# VmHWM (Linux) is the peak of this process's own address space; ru_maxrss survives execve, so a
# child forked from this (large) bench process would report at least the parent's size
CHILD = """
import json, resource, sys
from sparsetime.train import load_config, train
train(load_config(None, sys.argv[1:]))
try:
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
except OSError:
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"maxrss_kib": hwm}))
"""


def peak_rss(engine: str, out: Path, numba: bool = True, allocator: str = "retain") -> float:
    """MiB of peak resident memory of a short default run with ``sparsity.execution=engine``.

    ``allocator``: ``SPARSETIME_ALLOCATOR`` of the run (``retain``, the trainer's default, keeps
    freed memory in the process; ``system`` leaves glibc's malloc as it is)."""
    args = [f"output_dir={out / engine / str(numba) / allocator}", "epochs=1", "data.train_subset=4096", "progress=none",
            "device=cpu", f"sparsity.execution={engine}"]
    env = {k: v for k, v in os.environ.items() if k != "SPARSETIME_DISABLE_NUMBA"}
    if not numba:
        env["SPARSETIME_DISABLE_NUMBA"] = "1"
    env["SPARSETIME_ALLOCATOR"] = allocator
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])["maxrss_kib"] / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--density", type=float, default=0.02)
    parser.add_argument("--skip-rss", action="store_true", help="leave out the peak-RSS runs")
    parser.add_argument("--out", type=Path, default=None, help="run directories (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    print_table("MLP 784-1000-1000-10 (the runner's default model)", _mlp, args.density)
    print_table("GPT-style decoder 6x512, FFN 2048, vocab 4096", _decoder, args.density)
    if not args.skip_rss:
        print("\npeak resident memory of a short default job (subprocess each, VmHWM)")
        with tempfile.TemporaryDirectory() as tmp:
            out = args.out or Path(tmp)
            rss = {engine: peak_rss(engine, out) for engine in ("masked", "sparse", "auto")}
            # numba's compiler (LLVM) alone takes ~100 MiB once the kernels are imported
            rss["sparse, numba off"] = peak_rss("sparse", out, numba=False)
            for engine in ("masked", "sparse"):
                rss[f"{engine}, malloc system"] = peak_rss(engine, out, allocator="system")
        for engine, mib in rss.items():
            print(f"  sparsity.execution={engine:21s}  {mib:8.1f} MiB  ({mib / rss['masked']:.3f} of masked)")


if __name__ == "__main__":
    main()
