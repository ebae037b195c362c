"""Optimisers and learning-rate schedules of the configs (``optim.*``, ``schedule.*``).

Per-module learning rates (``optim.lr_scales``): a key names a module by its dotted path among the
trained parameters' names (``lit``, ``backbone.layer4``, ``head``); a parameter's rate is ``optim.lr``
times the scale of the most specific key that names it or a module holding it (1 without one). LFENet
trains its new LIT module at 100× the pretrained backbone's rate (LFENet, Sec. IV-B).
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence

import torch

from .config import ConfigError, OptimConfig, ScheduleConfig

__all__ = ["build_optimizer", "check_lr_scales", "scaled_groups", "lr_factor", "build_scheduler", "OPTIMIZERS",
           "SCHEDULES"]

NamedParameters = Sequence[tuple[str, torch.nn.Parameter]]

OPTIMIZERS = ("sgd", "adamw", "adam")
SCHEDULES = ("constant", "step", "poly", "cosine")


def _module_paths(name: str) -> list[str]:
    """Every module path holding parameter ``name`` and the name itself: "a.b.c" -> a, a.b, a.b.c."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def check_lr_scales(lr_scales: Mapping[str, float], named: NamedParameters) -> None:
    """Raise :class:`ConfigError` for a key of ``optim.lr_scales`` that names no trained parameter
    (frozen ones excluded), listing the valid top-level names."""
    paths = {path for name, p in named if p.requires_grad for path in _module_paths(name)}
    for key in lr_scales:
        if key not in paths:
            tops = sorted({name.split(".")[0] for name, p in named if p.requires_grad})
            raise ConfigError(f"optim.lr_scales: {key!r} names no trained module; valid names: {', '.join(tops)} "
                              "(or a dotted path below one of them, e.g. backbone.layer4)")


def scaled_groups(named: NamedParameters, lr_scales: Mapping[str, float]) -> list[dict]:
    """Parameter groups of the trained ``named`` parameters for :func:`build_optimizer`: each parameter
    in the group of the most specific ``lr_scales`` key naming it or a module holding it.

    Groups are ``{"name": key ("" for the unscaled), "params": [...], "lr_scale": scale}``, the
    unscaled one first, then by key: the same groups in the same order for the same config and model,
    whatever the keys' order (checkpoints load their optimiser state group by group).
    """
    groups: dict[str, list] = {}
    for name, p in named:
        if p.requires_grad:
            matches = [path for path in _module_paths(name) if path in lr_scales]
            groups.setdefault(matches[-1] if matches else "", []).append(p)
    return [{"name": key, "params": groups[key], "lr_scale": lr_scales.get(key, 1.0)} for key in sorted(groups)]


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
