"""torch.distributed under ``torchrun``: process setup, DDP wrapping, small collectives."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from .config import DDPConfig

__all__ = ["DistContext", "init_distributed", "wrap_ddp", "barrier", "all_reduce_mean"]


@dataclass(frozen=True)
class DistContext:
    """This process: ``rank`` of ``world_size``, its ``device``; ``is_main`` is rank 0 (logs, saves).
    ``ddp``: how :func:`wrap_ddp` wraps modules (the run's ``ddp`` config section)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    ddp: DDPConfig = field(default_factory=DDPConfig)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_WIRE_DTYPES = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}


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


@dataclass(frozen=True)
class _ReduceState:
    dtype: torch.dtype | None  # the wire dtype (None: the gradients' own)
    divisor: int                # world size to average, 1 to sum


def _reduce_hook(state: _ReduceState, bucket):
    # Divided before the sum (as torch's fp16_compress_hook), so a half-precision sum does not overflow.
    buffer = bucket.buffer()
    wire = buffer.to(state.dtype) if state.dtype is not None else buffer
    if state.divisor > 1:
        wire.div_(state.divisor)

    def unpack(future):
        reduced = future.value()[0]
        if reduced is not buffer:
            buffer.copy_(reduced)
        return buffer
    return dist.all_reduce(wire, async_op=True).get_future().then(unpack)


def wrap_ddp(module: nn.Module, context: DistContext, sum_gradients: bool = False,
             find_unused_parameters: bool = False, ignore: Sequence[str] = ()) -> nn.Module:
    """``module`` in DistributedDataParallel when there are several processes (else unchanged), with
    ``context.ddp``'s bucket size, static graph and gradient compression.

    ``sum_gradients``: sum the ranks' gradients instead of averaging them, for losses that every
    rank computes over the global batch (PartialFC): a 2-rank step then equals the 1-rank step on
    the concatenated batch (each rank's gradient is already its share of the global loss's). ``ignore``:
    names of parameters and buffers DDP must neither reduce nor broadcast (frozen parts, or state the
    module synchronises itself, e.g. QAFace's memory).
    """
    if context.world_size == 1:
        return module
    options = context.ddp
    if ignore:
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, list(ignore))
    ids = [context.device.index] if context.device.type == "cuda" else None
    wrapped = nn.parallel.DistributedDataParallel(
        module, device_ids=ids, find_unused_parameters=find_unused_parameters, bucket_cap_mb=options.bucket_cap_mb,
        static_graph=options.static_graph and not find_unused_parameters)
    wire = _WIRE_DTYPES[options.compression]
    if sum_gradients or wire is not None:
        wrapped.register_comm_hook(_ReduceState(wire, 1 if sum_gradients else context.world_size), _reduce_hook)
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
