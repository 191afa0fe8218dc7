"""Runs launched by ``torchrun``: the process group, which rank writes, and reductions of metrics.

``torchrun --nproc_per_node N -m sparsetime train ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` (and the rendezvous variables) in their environment. Each joins
one process group (NCCL on GPUs, gloo on CPU), trains on its slice of every global batch
(``batch_size`` per rank, so the global batch is ``batch_size * world_size``), and rank 0 alone
writes the run directory. Without those variables (or with one process) nothing here does any
communication.
"""
from __future__ import annotations

import contextlib
import datetime
import gc
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run (rank 0 of 1 for a plain run)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and logs (rank 0)."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int] | None:
        """``(rank, world_size)`` for :func:`sparsetime.data.batch_iterator`, None when alone."""
        return (self.rank, self.world_size) if self.enabled else None

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def all_reduce_sum(self, values: Sequence[float], device: torch.device) -> list[float]:
        """Elementwise sums of ``values`` over the ranks (float64)."""
        if not self.enabled:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_collective_device(device))
        torch.distributed.all_reduce(t)
        return t.tolist()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (a decision taken once, e.g. whether the run finished)."""
        if not self.enabled:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``model`` in DistributedDataParallel when several ranks train it (the sparsifier must be
        built first: sparse execution replaces layers), else ``model`` itself."""
        if not self.enabled:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def rank_slice(self, dataset: Any) -> Any:
        """This rank's share of an evaluation set: every ``world_size``-th sample from ``rank`` (no
        sample dropped or repeated; the sums over ranks are the whole set's)."""
        if not self.enabled:
            return dataset
        return torch.utils.data.Subset(dataset, list(range(self.rank, len(dataset), self.world_size)))


def _collective_device(device: torch.device) -> torch.device:
    return device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")


def launched() -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) from the torchrun environment, or None outside torchrun."""
    if not all(v in os.environ for v in LAUNCH_VARIABLES):
        return None
    try:
        rank, world, local = (int(os.environ[v]) for v in LAUNCH_VARIABLES)
    except ValueError:
        raise ValueError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers, got "
                         f"{[os.environ[v] for v in LAUNCH_VARIABLES]}") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"invalid torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return rank, world, local


def setup(device_name: str = "auto", timeout_minutes: float = 30.0) -> Distributed:
    """Join the process group torchrun prepared (once per process) and return this rank's place.

    The backend is NCCL when the run uses CUDA, else gloo. With CUDA each process uses the GPU of
    its ``LOCAL_RANK``.
    """
    env = launched()
    if env is None or env[1] == 1:
        return Distributed()
    rank, world, local = env
    dist = torch.distributed
    if not dist.is_available():
        raise ValueError("this PyTorch build has no torch.distributed; run without torchrun")
    cuda = torch.cuda.is_available() and device_name != "cpu"
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=timeout_minutes))
    return Distributed(rank, world, local)


def teardown(succeeded: bool = True) -> None:
    """Leave the process group, if this process joined one (end of a torchrun command).

    Unreferenced DDP reducers are collected first and, after a success, the ranks meet at a
    barrier, so no gloo work is still pending when the group goes: work left to the interpreter's
    shutdown can abort the process (SIGABRT) after a run that succeeded. (A rank that failed does
    not wait: the others may be blocked in another collective.)
    """
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        if succeeded:
            with contextlib.suppress(RuntimeError):
                dist.barrier()
        dist.destroy_process_group()


def rank_device(device_name: str, place: Distributed) -> str:
    """The device name a rank trains on: ``auto`` and ``cuda`` become ``cuda:<LOCAL_RANK>``."""
    if place.enabled and device_name in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{place.local_rank}"
    return device_name
