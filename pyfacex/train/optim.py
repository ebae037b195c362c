"""Optimisers and learning-rate schedules of the configs (``optim.*``, ``schedule.*``)."""
from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

import torch

from .config import OptimConfig, ScheduleConfig

__all__ = ["build_optimizer", "lr_factor", "build_scheduler", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("sgd", "adamw", "adam")
SCHEDULES = ("constant", "step", "poly", "cosine")


def build_optimizer(groups: Iterable[dict], config: OptimConfig) -> torch.optim.Optimizer:
    """The optimiser of ``config`` over parameter groups (dicts with ``params`` and optionally
    ``lr_scale``, which multiplies ``config.lr`` for that group)."""
    groups = [dict(g, lr=config.lr * g.pop("lr_scale", 1.0)) for g in groups]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters")
    if config.name == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.name in ("adamw", "adam"):
        cls = torch.optim.AdamW if config.name == "adamw" else torch.optim.Adam
        if len(config.betas) != 2:
            raise ValueError(f"optim.betas: expected two values, got {config.betas}")
        return cls(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps, weight_decay=config.weight_decay)
    raise ValueError(f"optim.name: expected one of {OPTIMIZERS}, got {config.name!r}")


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, config: ScheduleConfig) -> float:
    """The learning-rate multiplier at optimiser step ``step`` (0-based) of ``total_steps``.

    Warm-up: (step + 1) / warmup_steps for the first warmup_steps = warmup_epochs·steps_per_epoch
    steps (as arcface_torch's PolyScheduler). After it, t = (step − warmup) / (total − warmup):
    ``poly`` (1 − t)^power, ``cosine`` m + (1 − m)·(1 + cos πt)/2 with m = ``min_lr`` (a fraction of
    the base rate), ``step`` gamma^(milestones passed), ``constant`` 1.
    """
    if config.kind not in SCHEDULES:
        raise ValueError(f"schedule.kind: expected one of {SCHEDULES}, got {config.kind!r}")
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return (step + 1) / warmup
    if config.kind == "constant":
        return 1.0
    if config.kind == "step":
        milestones = sorted(int(round(m * steps_per_epoch)) for m in config.milestones)
        return config.gamma ** bisect.bisect_right(milestones, step)
    t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if config.kind == "poly":
        return (1.0 - t) ** config.power
    return config.min_lr + (1.0 - config.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int,
                    config: ScheduleConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepping :func:`lr_factor` once per optimiser step."""
    lr_factor(0, total_steps, steps_per_epoch, config)  # validates the config now, not at the first step
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, steps_per_epoch, config))
