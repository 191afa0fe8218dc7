"""Ticket transfer as a runner method (``sparsity.method=transfer``, Morcos et al. 2019).

A ticket found by one run seeds training on another task or with another optimiser:
``sparsity.options.source`` names the source run directory (a finished lottery level). The run takes
its masks and its init (the rewind weights, per ``restart`` of :mod:`.ticket_start`: rewind, reinit,
reshuffle, constant, signs), except for the output layer (the model's last Linear/Conv), which keeps
this run's own fresh initialisation and is kept dense (``output_layer: dense``, default) or re-pruned
at random to the source output layer's density (``pruned``). ``pruned: zero|frozen`` as for a level.
``mask: random`` is Morcos et al.'s random-ticket control: every layer but the output keeps the
ticket's count of active weights at uniformly random positions (with ``restart: reinit``, a random
mask at the ticket's per-layer densities on fresh weights); ``mask: ticket`` (default) keeps the
ticket's positions.
The source may also be a ``sparsetime lth`` experiment directory, or a folder holding exactly one,
whose deepest finished level is taken; ``{seed}`` in it is replaced by this run's seed, so a sweep
over seeds transfers each seed's own ticket. ``sparsity.density`` is not used (the ticket decides).
Training runs all T steps of this run's schedule from step 0 under the static mask. A source whose
shapes differ outside the output layer is refused before training, and its run directory removed.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsetime.core.selection import select_sparse_parameters
from sparsetime.pruning import random_masks, snapshot

from .checkpoint import load_checkpoint
from .config import SparsityConfig
from .context import SparsifierContext
from .init_masks import Masks, full_masks, load_masks, selection, static_sparsifier
from .lottery_level import LotteryLevel, control_seed
from .method_checks import check_choice, check_options
from .methods import register_method
from .ticket_start import check_ticket_options, start_ticket

log = logging.getLogger(__name__)

OUTPUT_LAYER = ("dense", "pruned")
TRANSFER_DEFAULTS = {"source": None, "restart": "rewind", "pruned": "zero", "output_layer": "dense", "mask": "ticket"}
MASK_CHOICES = ("ticket", "random")


def output_layer(model: nn.Module) -> tuple[str, ...]:
    """Parameter names of the model's output layer: the last module with a weight of two or more dimensions."""
    last = None
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() >= 2:
            last = name
    if last is None:
        raise ValueError("ticket transfer needs a model with a Linear or Conv output layer")
    prefix = f"{last}." if last else ""
    return tuple(n for n, _ in module_params(model, prefix))


def module_params(model: nn.Module, prefix: str) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of the module at ``prefix``, not of its children."""
    return [(n, p) for n, p in model.named_parameters() if n.startswith(prefix) and "." not in n[len(prefix):]]


def check_same_shapes(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                      skip: tuple[str, ...], where: str) -> None:
    """ValueError naming the first tensors whose names or shapes differ outside ``skip``."""
    problems = [f"{k} is missing there" for k in target if k not in skip and k not in source]
    problems += [f"{k} is {tuple(source[k].shape)} there but {tuple(v.shape)} here" for k, v in target.items()
                 if k not in skip and k in source and tuple(source[k].shape) != tuple(v.shape)]
    if problems:
        raise ValueError(f"sparsity.options.source = {where!r} holds a model whose shapes differ outside the output "
                         f"layer ({'; '.join(problems[:3])}); allowed: a run of the same model on inputs of the "
                         "same shape (only the output layer may differ)")


def source_directory(source: str, seed: int) -> Path:
    """The source run directory: ``source`` with ``{seed}`` filled in; an experiment directory (or a folder
    holding one) stands for its deepest finished level (not a control run)."""
    path = Path(source.replace("{seed}", str(seed)))
    for _ in range(2):
        if (path / "summary.json").is_file() or not path.is_dir():
            return path
        levels = sorted(p for p in path.glob("level_[0-9][0-9]-*") if (p / "summary.json").is_file())
        if levels:
            return levels[-1]
        inner = [p for p in path.iterdir() if p.is_dir()]
        if len(inner) != 1:
            return path
        path = inner[0]
    return path


def _source(path: Path, restart: str) -> tuple[Masks, dict[str, torch.Tensor] | None]:
    """The source run's masks and its ticket init (rewind weights; None when it has none)."""
    if not (path / "summary.json").is_file() or not (path / "checkpoint.pt").is_file():
        raise ValueError(f"sparsity.options.source = {str(path)!r} is not a finished run directory (it needs "
                         "summary.json and checkpoint.pt); allowed: the run directory of a finished lottery level")
    sparsifier = load_checkpoint(path / "checkpoint.pt")["sparsifier"]
    rewind = sparsifier.get("rewind") if isinstance(sparsifier, Mapping) else None
    if rewind is None and restart != "reinit":
        raise ValueError(f"sparsity.options.source = {str(path)!r} holds masks but no ticket init (rewind weights), "
                         f"so restart {restart!r} has nothing to start from; allowed: a lottery level as source, "
                         "or sparsity.options.restart = reinit")
    return load_masks(path), rewind


def _masks(ctx: SparsifierContext, source: Masks, outputs: tuple[str, ...], o: Mapping[str, Any]) -> Masks:
    names = select_sparse_parameters(ctx.model, **selection(ctx.sparsity))
    device = next(iter(ctx.model.parameters())).device
    masks: Masks = {}
    for name, p in names.items():
        if name in outputs:
            masks[name] = torch.ones_like(p, dtype=torch.bool)
            if o["output_layer"] == "pruned":
                density = float(source[name].float().mean()) if name in source else \
                    sum(int(m.sum()) for m in source.values()) / sum(m.numel() for m in source.values())
                count = torch.zeros_like(masks[name])
                count.view(-1)[: round(density * p.numel())] = True
                masks[name] = random_masks({name: count}, seed=control_seed(ctx.seed, 0))[name].to(device)
        elif name not in source:
            raise ValueError(f"the source ticket has no mask for {name!r}; allowed: a source that masks the same "
                             f"layers (it masks {sorted(source)[:6]})")
        else:
            masks[name] = source[name].to(device)
    if o["mask"] == "random":  # the ticket's per-layer counts at random positions (output layer as above)
        shuffled = random_masks({n: m for n, m in masks.items() if n not in outputs}, seed=control_seed(ctx.seed, 1))
        masks.update(shuffled)
    return masks


def _build(ctx: SparsifierContext) -> LotteryLevel:
    s = ctx.sparsity
    o = {**TRANSFER_DEFAULTS, **s.options}
    if ctx.resuming:
        return LotteryLevel(static_sparsifier(ctx, full_masks(ctx.model, s)), ctx.model, 0, None)
    path = source_directory(str(o["source"]), ctx.seed)
    source_masks, rewind = _source(path, o["restart"])
    outputs = output_layer(ctx.model)
    here = ctx.model.state_dict()
    check_same_shapes(rewind if rewind is not None else load_checkpoint(path / "checkpoint.pt")["model"], here,
                      outputs, str(path))
    init = snapshot(ctx.model)
    if rewind is not None:  # the ticket's init everywhere but the output layer (re-initialised: this run's own)
        ctx.model.load_state_dict({**here, **{k: v for k, v in rewind.items() if k not in outputs}})
    masks = _masks(ctx, source_masks, outputs, o)
    ticket = {n: m for n, m in masks.items() if n not in outputs}
    frozen = start_ticket(ctx.model, ticket, init, {"restart": o["restart"], "pruned": o["pruned"]},
                          control_seed(ctx.seed, 0))
    if frozen is not None:
        frozen.update({n: p.detach().clone() for n, p in ctx.model.named_parameters() if n in masks and n in outputs})
    log.info("transfer: ticket of %s (restart %s), output layer %s re-initialised and %s", path, o["restart"],
             list(outputs), o["output_layer"])
    start = {n: v.cpu() for n, v in snapshot(ctx.model).items()}  # this run's own ticket init, for a later transfer
    return LotteryLevel(static_sparsifier(ctx, masks), ctx.model, 0, start, frozen)


def _check(s: SparsityConfig) -> None:
    check_options("transfer", s.options, set(TRANSFER_DEFAULTS))
    o = {**TRANSFER_DEFAULTS, **s.options}
    if not isinstance(o["source"], str) or not o["source"]:
        raise ValueError(f"sparsity.options.source = {o['source']!r} is invalid; allowed: the run directory of a "
                         "finished lottery level (the ticket to transfer)")
    check_ticket_options({k: s.options[k] for k in ("restart", "pruned") if k in s.options})
    check_choice("sparsity.options.output_layer", o["output_layer"], OUTPUT_LAYER)
    check_choice("sparsity.options.mask", o["mask"], MASK_CHOICES)


register_method("transfer", _build, fixed={"update_interval": None}, check=_check,
                summary_extra=LotteryLevel.summary_extra,
                description="train a ticket (masks and init) read from another run directory (Morcos et al. 2019)")
