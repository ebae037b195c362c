"""Margin softmax cross-entropy, forward + backward: pyfacex fused against the eager composition.

Issue targets (CPU, d = 512, ratios in one run): at C = 100k, B = 512 the fused op's peak extra
memory <= 1/4 of the eager composition's; its time <= 1.0x eager and <= 1.5x the bare-GEMM floor.

Every implementation computes the loss of insightface arcface_torch's ArcFace (s = 64, m = 0.5,
straight-through margin) and the gradients of the embeddings and the class weights:

- ``pyfacex-native``: :func:`pyfacex.ops.margin_cross_entropy` (``grad="straight_through"``), the
  class dimension streamed in tiles with an online log-sum-exp: no (B, C) logits; at C = 10k the
  forward keeps its B·C dot products for the backward (3 GEMMs), at C = 100k they pass its 64 MiB
  budget and the backward recomputes them (4 GEMMs);
- ``eager``: arcface_torch's composition (normalise, linear, clamp, the margin in place under
  no_grad, cross-entropy), which materialises several (B, C) logit tensors;
- ``eager-compiled``: ``torch.compile`` of it (C = 10k only: compiling takes about a minute);
- ``floor-gemm``: the three bare GEMMs any implementation needs (logits, grad x, grad W).

The C = 1M group measures memory only (one round), at B = 256: the eager composition needs about
8 GiB there (B = 512 would take 16 GiB of this machine's 24).
"""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

import pyfacex.ops as ops
from common import compiled, first_call_or_skip, run

D, S, M = 512, 64.0, 0.5
TIMED = [(b, c) for b in (256, 512) for c in (10_000, 100_000)]
MEMORY_ONLY = [(256, 1_000_000)]


@functools.cache
def problem(rows: int, classes: int):
    """Embeddings, class weights (both requiring grad) and labels, shared by a group's implementations."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, D, generator=gen).requires_grad_()
    weight = torch.normal(0.0, 0.01, (classes, D), generator=gen).requires_grad_()
    return x, weight, torch.randint(0, classes, (rows,), generator=gen)


def eager_arcface(x: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """insightface arcface_torch: PartialFC_V2's logits and CombinedMarginLoss (m1 = 1, m3 = 0)."""
    logits = F.linear(F.normalize(x), F.normalize(weight)).clamp(-1, 1)
    index = torch.where(labels != -1)[0]
    target = logits[index, labels[index].view(-1)]
    with torch.no_grad():
        target.arccos_()
        logits.arccos_()
        logits[index, labels[index].view(-1)] = target + M
        logits.cos_()
    return F.cross_entropy(logits * S, labels)


def fused_arcface(x: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    with ops.use_backend("native"):
        return ops.margin_cross_entropy(x, weight, labels, s=S, m2=M, grad="straight_through")


def floor_gemms(x: torch.Tensor, weight: torch.Tensor):
    """The three GEMMs of any implementation, on inputs as large: logits, grad x, grad W."""
    grad_logits = torch.randn(x.shape[0], weight.shape[0])
    x, weight = x.detach(), weight.detach()

    def call():
        logits = x @ weight.t()
        return logits, grad_logits @ weight, grad_logits.t() @ x

    return call


def loss_and_grads(loss_fn, x, weight, labels):
    # autograd.grad, not .backward(): nothing accumulates into .grad between rounds.
    return lambda: torch.autograd.grad(loss_fn(x, weight, labels), (x, weight))


def test_eager_composition_computes_what_fused_does():
    """Both sides of the comparison compute the same loss and gradients (on a small problem)."""
    x, weight, labels = problem(16, 300)
    expected = loss_and_grads(eager_arcface, x, weight, labels)()
    for mine, theirs in zip(loss_and_grads(fused_arcface, x, weight, labels)(), expected):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)


def _call(impl: str, rows: int, classes: int):
    x, weight, labels = problem(rows, classes)
    if impl == "floor-gemm":
        return floor_gemms(x, weight)
    loss_fn = {"pyfacex-native": fused_arcface, "eager": eager_arcface}.get(impl) or compiled(eager_arcface)
    return loss_and_grads(loss_fn, x, weight, labels)


def _group(rows: int, classes: int) -> str:
    return f"margin_cross_entropy|B{rows}-d{D}-C{classes // 1000}k"


@pytest.mark.parametrize("impl", ["pyfacex-native", "eager", "eager-compiled", "floor-gemm"])
@pytest.mark.parametrize("rows,classes", TIMED, ids=[f"B{b}-C{c // 1000}k" for b, c in TIMED])
def test_margin_cross_entropy(benchmark, rows, classes, impl):
    if impl == "eager-compiled" and classes > 10_000:
        pytest.skip("torch.compile of the eager composition is benchmarked at C = 10k only (compile time)")
    call = _call(impl, rows, classes)
    if impl == "eager-compiled":
        first_call_or_skip(call, "torch.compile")
    run(benchmark, call, group=_group(rows, classes), impl=impl)


@pytest.mark.parametrize("impl", ["pyfacex-native", "eager", "floor-gemm"])
@pytest.mark.parametrize("rows,classes", MEMORY_ONLY, ids=[f"B{b}-C{c // 1000}k" for b, c in MEMORY_ONLY])
def test_margin_cross_entropy_memory(benchmark, rows, classes, impl):
    run(benchmark, _call(impl, rows, classes), group=_group(rows, classes) + "-memory", impl=impl, rounds=1)
    problem.cache_clear()  # 2 GiB of weights: free them for the next group
