"""Gradient checkpointing of the backbone's stages (``Config.grad_checkpoint``): activations recomputed in
the backward pass instead of kept, for batches that do not fit otherwise."""
from __future__ import annotations

import contextlib
from functools import partial

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

__all__ = ["STAGE_NAMES", "checkpoint_stages"]

STAGE_NAMES = ("layer1", "layer2", "layer3", "layer4")
"""The iResNet stages (and those of every backbone built on it: LGAF's, LFENet's, FAN-Face's FRN)."""


def checkpoint_stages(model: nn.Module, names: tuple[str, ...] = STAGE_NAMES) -> list[str]:
    """Recompute each backbone stage's activations in the backward pass instead of keeping them.

    Every ``nn.Sequential`` of ``model`` whose own name is in ``names`` (``layer1`` ... ``layer4`` of an
    iResNet, wherever it sits: ``backbone.layer3`` in LGAF) runs under torch's non-reentrant
    :func:`torch.utils.checkpoint.checkpoint` while training with gradients: only the stage's input is
    kept, and the backward pass runs the stage again. The recomputation would update the BatchNorm
    running statistics a second time, so they are put back as the forward left them (the result is
    the run without checkpointing, statistics included); dropout draws the same masks (the RNG state is
    replayed). The state_dict keys do not change: checkpoints and model files stay compatible.

    Returns:
        the dotted names of the stages now checkpointed.
    Raises:
        ValueError: ``model`` has no such stage.
    """
    wrapped = []
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in names and isinstance(module, nn.Sequential):
            module.forward = partial(_checkpointed, module, type(module).forward)
            wrapped.append(name)
    if not wrapped:
        raise ValueError(f"grad_checkpoint: {type(model).__name__} has no backbone stage named "
                         f"{', '.join(names)} to checkpoint")
    return wrapped


def _checkpointed(module: nn.Module, forward, x: torch.Tensor) -> torch.Tensor:
    if not (module.training and torch.is_grad_enabled()):  # evaluation: nothing is kept for a backward pass
        return forward(module, x)
    return checkpoint(forward, module, x, use_reentrant=False,
                      context_fn=lambda: (contextlib.nullcontext(), _KeepBatchNormStatistics(module)))


class _KeepBatchNormStatistics:
    """Around the recomputation: the running statistics and batch counts of ``module``'s BatchNorms as
    they were before it (as the forward pass left them)."""

    def __init__(self, module: nn.Module):
        self.norms = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]

    def __enter__(self):
        self.saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
                      for m in self.norms]

    def __exit__(self, *exc):
        with torch.no_grad():
            for m, (mean, var, count) in zip(self.norms, self.saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
