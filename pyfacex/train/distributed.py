"""torch.distributed under ``torchrun``: process setup, DDP wrapping, small collectives."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistContext", "init_distributed", "wrap_ddp", "barrier", "all_reduce_mean"]


@dataclass(frozen=True)
class DistContext:
    """This process: ``rank`` of ``world_size``, its ``device``; ``is_main`` is rank 0 (logs, saves)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1 in the environment; NCCL on
    CUDA, gloo on CPU) or run alone. ``device``: ``auto`` (the local rank's GPU when CUDA is
    available, else CPU), ``cpu`` or ``cuda``."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device: expected auto, cpu or cuda, got {device!r}")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("device: cuda was asked for but no CUDA device is visible")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size > 1 and not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    target = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    return DistContext(rank, world_size, local_rank, target)


def _sum_hook(state, bucket):
    # Each rank's gradient is already its share of the global loss's gradient (PartialFC gives every
    # rank the loss of the whole global batch): sum the shares instead of averaging them.
    return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(lambda fut: fut.value()[0])


def wrap_ddp(module: nn.Module, context: DistContext, sum_gradients: bool = False,
             find_unused_parameters: bool = False, ignore: Sequence[str] = ()) -> nn.Module:
    """``module`` in DistributedDataParallel when there are several processes (else unchanged).

    ``sum_gradients``: sum the ranks' gradients instead of averaging them, for losses that every
    rank computes over the global batch (PartialFC): a 2-rank step then equals the 1-rank step on
    the concatenated batch. ``ignore``: names of parameters and buffers DDP must neither reduce nor
    broadcast (frozen parts, or state the module synchronises itself, e.g. QAFace's memory).
    """
    if context.world_size == 1:
        return module
    if ignore:
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, list(ignore))
    ids = [context.device.index] if context.device.type == "cuda" else None
    wrapped = nn.parallel.DistributedDataParallel(module, device_ids=ids,
                                                  find_unused_parameters=find_unused_parameters)
    if sum_gradients:
        wrapped.register_comm_hook(None, _sum_hook)
    return wrapped


def barrier(context: DistContext) -> None:
    """Wait for every rank (no-op alone)."""
    if context.world_size > 1:
        dist.barrier()


def all_reduce_mean(values: dict[str, float], context: DistContext) -> dict[str, float]:
    """The mean over ranks of scalar logs (every rank must pass the same keys)."""
    if context.world_size == 1 or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor)
    return dict(zip(keys, (tensor / context.world_size).tolist()))
