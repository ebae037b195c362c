"""LFENet's Local Information Transfer (LFENet eq. 1-5): pyfacex against per-set loops and the quadratic form.

Issue targets (ratios in one run):
- a ragged batch of 64 sets (1-20 images of 7×7 positions, d = 512) in one call >= 3× faster than a
  Python loop over the sets;
- ``scaled_dot`` at N = 4096 tokens, d = 512: the linear path q·(kᵀv)/N >= 10× faster than the
  quadratic (qᵀk/N)·v, with memory independent of N².

Groups:
- ``lit|T{T}-d{d}``: 2 sets of T ∈ {3, 10, 50} images, h = w = 7, forward (inference) of
  ``LocalInformationTransfer`` (softmax_b): one call (``pyfacex-native``) against ``eager``, the
  per-set loop a user writes (projections, softmax(qkᵀ)·v, residual, per set);
- ``lit_ragged64-fwd|d512`` and ``lit_ragged64-fwdbwd|d512``: the 64 ragged sets, forward (no grad)
  and forward + backward: one call against ``loop``, the same module called once per set;
- ``scaled_dot|N4096-d512``: :func:`pyfacex.ops.segment_linear_attention` native (linear) against
  its reference (``quadratic``: the N×N relation, as eq. 4 reads), forward + backward.
"""
from __future__ import annotations

import functools

import pytest
import torch

import pyfacex.nn as pnn
import pyfacex.ops as ops
from common import run

HW = 7


@functools.cache
def module(dim: int, relation: str = "softmax_b") -> pnn.LocalInformationTransfer:
    torch.manual_seed(0)
    lit = pnn.LocalInformationTransfer(dim, relation=relation)
    torch.nn.init.normal_(lit.value.weight, std=dim**-0.5)  # a trained module, not the initial identity
    return lit


@functools.cache
def sets(sizes: tuple[int, ...], dim: int):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(sum(sizes), dim, HW, HW, generator=gen)
    return x, torch.tensor((0, *sizes)).cumsum(0)


def eager_lit(lit: pnn.LocalInformationTransfer, x: torch.Tensor, sizes) -> torch.Tensor:
    """softmax_b as a user writes it: per set, tokens, projections, softmax(q kᵀ)·v, residual."""
    outs, start = [], 0
    for size in sizes:
        tokens = x[start:start + size].permute(0, 2, 3, 1).reshape(-1, x.shape[1])
        q, k, v = lit.query(tokens), lit.key(tokens), lit.value(tokens)
        moved = torch.softmax(q @ k.t(), dim=1) @ v
        outs.append(x[start:start + size] + moved.reshape(size, HW, HW, -1).permute(0, 3, 1, 2))
        start += size
    return torch.cat(outs)


SET_SHAPES = [(t, d) for d in (512, 2048) for t in (3, 10, 50)]


@pytest.mark.parametrize("impl", ["pyfacex-native", "eager"])
@pytest.mark.parametrize("size,dim", SET_SHAPES, ids=[f"T{t}-d{d}" for t, d in SET_SHAPES])
def test_lit_sets(benchmark, size, dim, impl):
    lit, sizes = module(dim), (size, size)
    x, offsets = sets(sizes, dim)

    @torch.no_grad()
    def call():
        if impl == "eager":
            return eager_lit(lit, x, sizes)
        with ops.use_backend("native"):
            return lit(x, offsets)

    run(benchmark, call, group=f"lit|T{size}-d{dim}", impl=impl)


RAGGED = tuple(int(t) for t in torch.randint(1, 21, (64,), generator=torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("impl", ["pyfacex-native", "loop"])
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward+backward"])
def test_lit_ragged_batch(benchmark, impl, backward):
    lit = module(512)
    x, offsets = sets(RAGGED, 512)
    x = x.detach().requires_grad_(backward)
    bounds = offsets.tolist()

    def call():
        with ops.use_backend("native"), torch.set_grad_enabled(backward):
            if impl == "loop":
                out = torch.cat([lit(x[a:b], torch.tensor([0, b - a])) for a, b in zip(bounds[:-1], bounds[1:])])
            else:
                out = lit(x, offsets)
            return torch.autograd.grad(out.sum(), (x, *lit.parameters())) if backward else out

    run(benchmark, call, group=f"lit_ragged64{'-fwdbwd' if backward else '-fwd'}|d512", impl=impl)


@pytest.mark.parametrize("impl", ["pyfacex-native", "quadratic"])
def test_scaled_dot(benchmark, impl):
    gen = torch.Generator().manual_seed(3)
    n, d = 4096, 512
    q, k = (torch.randn(n, d // 2, generator=gen).requires_grad_() for _ in range(2))
    v = torch.randn(n, d, generator=gen).requires_grad_()
    offsets = torch.tensor([0, n])

    def call():
        with ops.use_backend("native" if impl == "pyfacex-native" else "reference"):
            out = ops.segment_linear_attention(q, k, v, offsets)
        return torch.autograd.grad(out.sum(), (q, k, v))

    run(benchmark, call, group=f"scaled_dot|N{n}-d{d}", impl=impl)
