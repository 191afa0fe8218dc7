"""The engine under ``torch.distributed``: one topology on every rank, and a check that it is.

Every rank must train the same sparse network. Public DST code seeds ranks differently and
draws masks without a broadcast, so ranks silently diverge. Here:

* initial masks and the sparsifier's generator state are broadcast from rank 0, so masks,
  tie-breaks and random growth are the same on every rank whatever each rank was seeded with;
* growth reads gradients after DDP's all-reduce (``step()`` runs after ``optimizer.step()``); what
  DDP does not reduce -- the layer inputs and output gradients a sparse layer keeps for RigL's
  scores -- is gathered over the ranks, giving the gradient of the global batch;
* after every topology update a checksum of every layer's active set is compared over the ranks
  (:func:`check_same_topology`), raising an error that names the layer and the ranks.

Collectives run on the device the tensors live on; with no process group (or one rank) every
function here is a no-op.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

_MODULUS = (1 << 61) - 1  # a Mersenne prime: position-weighted sums stay exact in int64


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _device_for(tensor: torch.Tensor) -> torch.device:
    """Where a collective on ``tensor`` must run (NCCL needs CUDA tensors, gloo takes CPU ones)."""
    backend = torch.distributed.get_backend()
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device if tensor.device.type == "cpu" else torch.device("cpu")


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` in place with rank ``src``'s copy (bool tensors included)."""
    if not is_distributed():
        return tensor
    dev = _device_for(tensor)
    buf = tensor.to(dev, torch.uint8 if tensor.dtype == torch.bool else tensor.dtype).contiguous()
    torch.distributed.broadcast(buf, src)
    tensor.copy_(buf.to(tensor.device, tensor.dtype))
    return tensor


def broadcast_masks_(masks: Mapping[str, torch.Tensor], src: int = 0) -> None:
    """Make every rank's masks rank ``src``'s, in place, in a fixed (sorted) name order."""
    for name in sorted(masks):
        broadcast_(masks[name], src)


def broadcast_generator_(generator: torch.Generator, src: int = 0) -> None:
    """Give ``generator`` rank ``src``'s state."""
    if is_distributed():
        generator.set_state(broadcast_(generator.get_state().clone(), src))


def all_gather_cat(tensor: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Every rank's ``tensor`` concatenated along ``dim`` in rank order (sizes along ``dim`` may
    differ; the other dimensions must agree)."""
    if not is_distributed():
        return tensor
    dist = torch.distributed
    dim = dim % tensor.dim()
    dev = _device_for(tensor)
    local = tensor.detach().to(dev).contiguous()
    sizes = [torch.zeros(1, dtype=torch.long, device=dev) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([local.shape[dim]], device=dev))
    longest = int(max(s.item() for s in sizes))
    pad = list(local.shape)
    pad[dim] = longest - local.shape[dim]
    padded = torch.cat([local, local.new_zeros(pad)], dim) if pad[dim] else local
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    parts = [p.narrow(dim, 0, int(s.item())) for p, s in zip(parts, sizes)]
    return torch.cat(parts, dim).to(tensor.device)


def topology_checksum(active: torch.Tensor) -> torch.Tensor:
    """Three int64 numbers that differ for different sorted index sets (count, sum, and a
    position-weighted sum modulo a prime), computed exactly."""
    idx = active.detach().long().cpu()
    weights = torch.arange(1, idx.numel() + 1, dtype=torch.long)
    weighted = int(((idx % _MODULUS) * weights % _MODULUS).sum() % _MODULUS) if idx.numel() else 0
    return torch.tensor([idx.numel(), int(idx.sum()) if idx.numel() else 0, weighted], dtype=torch.long)


class TopologyMismatchError(RuntimeError):
    """The ranks of a distributed run hold different sparse topologies."""


def check_same_topology(actives: Mapping[str, torch.Tensor], step: int) -> None:
    """Compare every layer's active set over the ranks; raise :class:`TopologyMismatchError` on
    every rank (so none hangs in a later collective) naming the first layer that differs."""
    if not is_distributed():
        return
    dist = torch.distributed
    names = sorted(actives)
    mine = torch.stack([topology_checksum(actives[n]) for n in names]) if names else torch.zeros(0, 3)
    probe = mine.to(_device_for(mine))
    gathered = [torch.empty_like(probe) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, probe)
    gathered = [g.cpu() for g in gathered]
    for i, name in enumerate(names):
        groups: dict[tuple, list[int]] = {}
        for rank, g in enumerate(gathered):
            groups.setdefault(tuple(g[i].tolist()), []).append(rank)
        if len(groups) > 1:
            desc = "; ".join(f"ranks {ranks}: {key[0]} active" for key, ranks in groups.items())
            raise TopologyMismatchError(
                f"the sparse topology of layer {name!r} differs across ranks after step {step} ({desc}); every "
                "rank must train the same masks: build the sparsifier with the same arguments on every rank, "
                "feed gradients through DistributedDataParallel, and do not change masks on one rank only")
