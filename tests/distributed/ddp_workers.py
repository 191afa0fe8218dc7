"""Functions run by each rank of the 2-process gloo tests (spawned; results go to files)."""
from __future__ import annotations

import gc
import os
import traceback

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

import sparsetime as st

IN, HIDDEN, OUT, BATCH = 12, 48, 4, 8  # BATCH per rank; the global batch is BATCH * world


def model_and_data(seed: int, steps: int, world: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                          nn.Linear(HIDDEN, OUT)).double()
    g = torch.Generator().manual_seed(1234)  # the same global batches everywhere
    xs = torch.randn(steps, BATCH * world, IN, generator=g, dtype=torch.float64)
    ys = torch.randint(0, OUT, (steps, BATCH * world), generator=g)
    return model, xs, ys


def sparsifier(model, opt, growth: str, execution: str, seed: int, steps: int, **kw):
    return st.DynamicSparsity(model, opt, density=0.2, growth=growth, drop_fraction=0.4, update_interval=3,
                              total_steps=steps, seed=seed, execution=execution,
                              redistribution=growth == "momentum", **kw)


def train(rank: int, world: int, growth: str, execution: str, steps: int, out: str, desync: bool = False) -> None:
    """Train ``steps`` steps; rank r takes its share of every global batch. Ranks are seeded
    differently on purpose (model init and sparsifier seed)."""
    try:
        model, xs, ys = model_and_data(seed=rank, steps=steps, world=world)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        sp = sparsifier(model, opt, growth, execution, seed=100 + rank, steps=steps)
        ddp = nn.parallel.DistributedDataParallel(model) if world > 1 else model
        if desync and rank == 1:  # break rank 1's topology behind the engine's back
            store = sp.stores["2.weight"]
            active = store.active()
            store.set_active(torch.cat([active[1:], torch.tensor([int(active[-1]) + 1])]).unique())
        lo, hi = rank * BATCH, (rank + 1) * BATCH
        actives = []
        for t in range(steps):
            loss = F.cross_entropy(ddp(xs[t, lo:hi]), ys[t, lo:hi])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sp.step() is not None:
                actives.append({n: sp.active_indices(n).clone() for n in sp.layer_names})
        state = {n: v.detach().clone() for n, v in model.state_dict().items()}
        torch.save({"actives": actives, "weights": state, "rs": sp.exploration_rate(),
                    "stats": sp.exploration_stats(), "layer_rates": sp.layer_exploration_rates(),
                    "execution": sp.layer_execution}, os.path.join(out, f"rank{rank}.pt"))
    except Exception as exc:  # noqa: BLE001 - reported to the test through the file
        with open(os.path.join(out, f"rank{rank}.err"), "w") as fh:
            fh.write(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")


def run_rank(rank: int, world: int, init_file: str, target, *args) -> None:
    """Entry point of ``torch.multiprocessing.spawn``: join the gloo group, run ``target``."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        target(rank, world, *args)
        gc.collect()  # drop the DDP reducer (and its pending gloo work) before the barrier
        dist.barrier()  # no rank tears the group down while another still talks to it
    finally:
        dist.destroy_process_group()


def prune(rank: int, world: int, kind: str, steps: int, out: str) -> None:
    """GMP or SNIP-seeded static training under DDP, ranks seeded differently; saves the masks."""
    try:
        model, xs, ys = model_and_data(seed=rank, steps=steps, world=world)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        lo, hi = rank * BATCH, (rank + 1) * BATCH
        if kind == "gmp":
            sp = st.pruning.GradualMagnitudePruner(model, opt, 0.1, 2, 8, 2, seed=rank)
            local = None
        else:  # SNIP on this rank's own batch: the ranks score different data
            local = st.pruning.masks_from_scores(
                st.pruning.scores(model, "snip", [(xs[0, lo:hi], ys[0, lo:hi])], loss_fn=F.cross_entropy), 0.2)
            sp = st.DynamicSparsity(model, opt, initial_masks=local, update_interval=None, seed=rank)
        ddp = nn.parallel.DistributedDataParallel(model)
        for t in range(steps):
            opt.zero_grad()
            F.cross_entropy(ddp(xs[t, lo:hi]), ys[t, lo:hi]).backward()
            opt.step()
            sp.step()
        torch.save({"masks": {n: m.clone() for n, m in sp.masks.items()}, "local": local},
                   os.path.join(out, f"rank{rank}.pt"))
    except Exception as exc:  # noqa: BLE001
        with open(os.path.join(out, f"rank{rank}.err"), "w") as fh:
            fh.write(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
