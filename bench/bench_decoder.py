"""Training step of a GPT-style decoder: dense vs truly sparse, interleaved in one process.

Decoder (``sparsetime.models.decoder``): 6 pre-norm blocks, d_model 512, 8 heads, FFN 2048,
sequence 128, batch 8, vocabulary 4096, causal self-attention with fused Q/K/V ``in_proj``. The
sparse model is the same dense model (same seed) driven by ``DynamicSparsity(execution="sparse",
distribution="uniform")``: every Linear (Q/K/V, attention output, FFN, LM head) is a SparseLinear,
the embeddings stay dense. One step = forward, next-token cross-entropy, backward, AdamW step and
``sparsifier.step()``. Steps are timed interleaved (dense, sparse 0.1, sparse 0.02, repeated) and
medians printed with three ratios (of medians, of minima, and the median of the per-round
ratios, the most robust to a background load that comes and goes); a topology update (SET,
drop 0.3) is timed separately.

    python bench/bench_decoder.py [--reps 9] [--densities 0.1 0.02]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import sparsetime as st
from sparsetime.kernels import numba_available
from sparsetime.models.decoder import Decoder, lm_loss

VOCAB, SEQ, BATCH = 4096, 128, 8


def build(density: float | None) -> tuple[torch.nn.Module, torch.optim.Optimizer, st.DynamicSparsity | None]:
    torch.manual_seed(0)
    model = Decoder(vocab=VOCAB, width=512, heads=8, ffn=2048, layers=6, max_seq=SEQ)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
    if density is None:
        return model, opt, None
    sp = st.DynamicSparsity(model, opt, density=density, distribution="uniform", update_interval=10**6,
                            total_steps=10**7, drop_fraction=0.3,
                            execution="sparse")
    assert set(sp.layer_execution.values()) == {"sparse"}, sp.layer_execution
    return model, opt, sp


def step(model, opt, sp, tokens: torch.Tensor) -> float:
    t = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    lm_loss(model, tokens).backward()
    opt.step()
    if sp is not None:
        sp.step()
    return time.perf_counter() - t


def topology_update_seconds(sp: st.DynamicSparsity) -> float:
    t = time.perf_counter()
    sp.update_topology()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--densities", type=float, nargs="+", default=[0.1, 0.02])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"decoder 6x512, 8 heads, FFN 2048, seq {SEQ}, batch {BATCH}, vocab {VOCAB}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, numba {'on' if numba_available() else 'off'}")
    engines = {"dense": build(None), **{f"sparse d={d:g}": build(d) for d in args.densities}}
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, VOCAB, (BATCH, SEQ + 1), generator=gen) for _ in range(4)]
    for engine in engines.values():  # warm-up: JIT compile, allocator
        for tokens in batches[:2]:
            step(*engine, tokens)
    times: dict[str, list[float]] = {name: [] for name in engines}
    for r in range(args.reps):
        for name, engine in engines.items():
            times[name].append(step(*engine, batches[r % len(batches)]))
    dense = times["dense"]
    print(f"{'engine':14s} {'median s/step':>14s} {'min':>8s} {'max':>8s} {'median/median':>14s} "
          f"{'min/min':>8s} {'paired':>8s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        # paired: median over rounds of (dense step / this step) in the same round, which cancels
        # load that changes slowly between rounds
        paired = statistics.median(d / t for d, t in zip(dense, ts))
        print(f"{name:14s} {med:14.3f} {min(ts):8.3f} {max(ts):8.3f} {statistics.median(dense) / med:13.2f}x "
              f"{min(dense) / min(ts):7.2f}x {paired:7.2f}x")
    for name, (_, _, sp) in engines.items():
        if sp is not None:
            upd = statistics.median(topology_update_seconds(sp) for _ in range(3))
            print(f"{name}: one topology update (drop/regrow every layer) {upd:.3f} s")


if __name__ == "__main__":
    main()
