"""Optimisers and learning-rate schedules built from the config.

Schedules are stepped once per optimiser step, so milestones given as fractions of training
land on exact steps whatever the epoch count or ``extend`` multiplier.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import OptimConfig, ScheduleConfig


def parameter_groups(model: nn.Module, weight_decay: float, exclude_bias_norm: bool) -> list[dict]:
    """One group, or two when biases and normalisation parameters (every tensor with at most
    one dimension) are excluded from weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not exclude_bias_norm:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.dim() > 1]
    no_decay = [p for p in params if p.dim() <= 1]
    return [g for g in ({"params": decay, "weight_decay": weight_decay},
                        {"params": no_decay, "weight_decay": 0.0}) if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam or AdamW over the model's trainable parameters."""
    groups = parameter_groups(model, cfg.weight_decay, cfg.exclude_bias_norm)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
    raise ValueError(f"unknown optim.name {cfg.name!r}; allowed: sgd, adam, adamw")


def lr_factor(step: int, cfg: ScheduleConfig, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based).

    Linear warm-up multiplies by ``(step + 1) / warmup_steps`` during the first ``warmup_steps``;
    multistep multiplies by ``gamma`` once per milestone ``m`` with ``step >= round(m * total_steps)``;
    cosine decays from 1 to ``min_lr / base_lr`` over the steps after warm-up.
    """
    warm = (step + 1) / warmup_steps if step < warmup_steps else 1.0
    if cfg.name == "none":
        return warm
    if cfg.name == "multistep":
        passed = sum(step >= round(m * total_steps) for m in cfg.milestones)
        return warm * cfg.gamma ** passed
    if cfg.name == "cosine":
        floor = cfg.min_lr / base_lr
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, max(0, step - warmup_steps) / span)
        return warm * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))
    raise ValueError(f"unknown schedule.name {cfg.name!r}; allowed: none, multistep, cosine")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int,
                    steps_per_epoch: int, base_lr: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step ``LambdaLR`` following :func:`lr_factor`."""
    if total_steps < 1 or steps_per_epoch < 1:
        raise ValueError(f"total_steps and steps_per_epoch must be >= 1, got {total_steps}, {steps_per_epoch}")
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
    lr_factor(0, cfg, total_steps, warmup_steps, base_lr)  # validates the schedule name now

    def factor(step: int) -> float:
        return lr_factor(step, cfg, total_steps, warmup_steps, base_lr)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
