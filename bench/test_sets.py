"""Set ops (set_max, global_concat): pyfacex against what a user writes without it, and the floor.

Implementations, side by side in each group:
    pyfacex-native, pyfacex-reference: ``pyfacex.ops`` on that backend, packed form (x, offsets);
    eager: the plain-PyTorch composition a user would write (below);
    eager-compiled: torch.compile of that composition;
    floor-clone: a clone of as many bytes as the op must move at the least.

Issue target: global_concat, 10 sets × 6 × (64, 56, 56) fp32 on CPU: native >= 1.5× faster than
eager and >= 60% of the floor's bandwidth.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

import pyfacex.ops as ops
from common import compiled, first_call_or_skip, floor_clone, run

# Group label -> (set sizes, member shape). Sizes are a tuple of ints so that torch.compile
# specialises on them, as it would for a training loop with a fixed sampler.
SHAPES = {
    "10x6x64x56x56": ((6,) * 10, (64, 56, 56)),
    "10x6x64x14x14": ((6,) * 10, (64, 14, 14)),
    "ragged1..10x64x56x56": (tuple(range(1, 11)), (64, 56, 56)),
}
IMPLS = ("pyfacex-native", "pyfacex-reference", "eager", "eager-compiled", "floor-clone")
# Group name -> (op, whether the backward is timed too).
OPS = {
    "global_concat": ("global_concat", False),
    "global_concat_fwd_bwd": ("global_concat", True),
    "set_max": ("set_max", False),
}


# ---------------------------------------------------------------- the eager compositions

def eager_set_max(x: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    if len(set(sizes)) == 1:
        return x.view(len(sizes), sizes[0], *x.shape[1:]).amax(1)
    # Ragged: a loop over sets; torch.segment_reduce was 6x slower here.
    return torch.stack([members.amax(0) for members in x.split(sizes)])


def eager_global_concat(x: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    channels = x.shape[1]
    if len(set(sizes)) == 1:
        dense = x.view(len(sizes), sizes[0], *x.shape[1:])
        maxima = dense.amax(1, keepdim=True).expand_as(dense)
        return torch.cat([dense, maxima], dim=2).flatten(0, 1)
    # Ragged: writing each set's max into one preallocated output moves fewer bytes (and was 1.5x
    # faster here) than concatenating x with the repeated maxima.
    out = x.new_empty(x.shape[0], 2 * channels, *x.shape[2:])
    out[:, :channels] = x
    start = 0
    for size in sizes:  # slices, not out.split(): autograd forbids writing into split()'s views
        out[start:start + size, channels:] = x[start:start + size].amax(0)
        start += size
    return out


EAGER = {"set_max": eager_set_max, "global_concat": eager_global_concat}


# ---------------------------------------------------------------- inputs

@dataclass(frozen=True)
class Batch:
    x: torch.Tensor  # (N, *member shape), the sets packed along dim 0
    offsets: torch.Tensor
    sizes: tuple[int, ...]


@functools.cache
def batch(shape: str, requires_grad: bool) -> Batch:
    """One input per shape, shared by the implementations of a group (cached: randn of 48 MB is slow)."""
    sizes, member = SHAPES[shape]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(sum(sizes), *member, generator=generator).requires_grad_(requires_grad)
    offsets = torch.tensor((0, *sizes)).cumsum(0)
    return Batch(x, offsets, sizes)


def floor_bytes(group: str, b: Batch) -> int:
    """Bytes the floor clones: half of what the op must read plus write (a clone reads and writes)."""
    x_bytes = b.x.numel() * b.x.element_size()
    if group == "set_max":  # read x, write one row per set
        return (x_bytes + x_bytes * len(b.sizes) // len(b.x)) // 2
    if group == "global_concat":  # read x, write (x, max)
        return 3 * x_bytes // 2
    # Forward as above, backward reads the output's gradient (2x) and writes x's (1x). What tells
    # the backward which member held the max is left out: the floor is a lower bound.
    return 3 * x_bytes


# ---------------------------------------------------------------- the benchmark

def forward(impl: str, op: str, b: Batch) -> Callable[[torch.Tensor], torch.Tensor]:
    """The implementation ``impl`` of ``op`` as a function of x."""
    if impl.startswith("pyfacex-"):
        backend, pyfacex_op = impl.removeprefix("pyfacex-"), getattr(ops, op)

        def call(x):
            with ops.use_backend(backend):
                return pyfacex_op(x, b.offsets)

        return call
    eager = compiled(EAGER[op]) if impl == "eager-compiled" else EAGER[op]
    return lambda x: eager(x, b.sizes)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("group", OPS)
def test_sets(benchmark, group, shape, impl):
    op, backward = OPS[group]
    b = batch(shape, requires_grad=backward)
    if impl == "floor-clone":
        call = floor_clone(floor_bytes(group, b))
    elif backward:
        fn = forward(impl, op, b)
        grad = torch.ones(b.x.shape[0], 2 * b.x.shape[1], *b.x.shape[2:])  # global_concat's output
        # autograd.grad, not .backward(): nothing accumulates into x.grad between rounds.
        call = lambda: torch.autograd.grad(fn(b.x), b.x, grad)  # noqa: E731
    else:
        fn = forward(impl, op, b)
        call = lambda: fn(b.x)  # noqa: E731
    if impl == "eager-compiled":
        first_call_or_skip(call, "torch.compile")
    run(benchmark, call, group=f"{group}|{shape}", impl=impl)
