"""The Triton margin kernels under the interpreter: class splits, determinism, int64 offsets,
precision, and the planner's rules (tests/ops covers the op contract on the same kernels)."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

import pyfacex.ops as ops

pytestmark = pytest.mark.usefixtures("interpreter_only")

S = 8.0  # keeps the softmax away from one-hot, so every class's gradient is visible


@pytest.fixture
def margin():
    from pyfacex.triton import margin

    return margin


def _problem(rows, classes, d, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    xn = F.normalize(torch.randn(rows, d, generator=gen, dtype=torch.float64), dim=1).to(dtype)
    weight = (0.1 * torch.randn(classes, d, generator=gen, dtype=torch.float64)).to(dtype)
    labels = torch.randint(0, classes, (rows,), generator=gen)
    if rows > 1:
        labels[1] = -1
    return xn, weight, labels


def _statistics_and_grads(backend, xn, weight, labels, filter_threshold=None):
    """The four statistics and the gradients of xn and weight of a fixed projection of them."""
    xn, weight = xn.clone().requires_grad_(), weight.clone().requires_grad_()
    _, target, slope = ops.margin_targets(xn, weight, labels, S, m2=0.3)
    with ops.use_backend(backend):
        out = ops.cosine_logsumexp(xn, weight, labels, target, slope, S, filter_threshold)
    # The log-sum-exp, not row_max and sumexp alone: their split between the two is a free choice.
    stats = (out.row_max + torch.log(out.sumexp), out.nontarget_sum, out.target)
    gen = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in stats)
    grads = torch.autograd.grad(loss, (xn, weight)) if xn.shape[0] else (torch.zeros_like(xn), torch.zeros_like(weight))
    return [t.detach() for t in stats] + list(grads)


def _with_splits(margin, monkeypatch, tiles_per_split):
    """Make margin.plan give splits of ``tiles_per_split`` class tiles; returns the plans it made."""
    plans = []
    real = margin.plan

    def plan(*args, **kwargs):
        p = real(*args, **kwargs)
        p = dataclasses.replace(p, classes_per_split=tiles_per_split * p.block_c)
        plans.append(p)
        return p

    monkeypatch.setattr(margin, "plan", plan)
    return plans


@pytest.mark.parametrize("tiles_per_split", [1, 2, 3])
@pytest.mark.parametrize("rows, classes, filter_threshold", [(5, 150, None), (40, 97, None), (0, 150, None),
                                                             (40, 97, 0.1)], ids=["B5", "B40", "B0", "B40-filtered"])
def test_class_splits_match_the_reference(margin, monkeypatch, tiles_per_split, rows, classes, filter_threshold):
    """Any class split (one tile each, several, a last split shorter than the others; C not a multiple
    of the tile; B = 0; inter-class filtering) gives the reference's statistics and gradients."""
    plans = _with_splits(margin, monkeypatch, tiles_per_split)
    xn, weight, labels = _problem(rows, classes, 24)
    mine = _statistics_and_grads("triton", xn, weight, labels, filter_threshold)
    expected = _statistics_and_grads("reference", xn, weight, labels, filter_threshold)
    if rows:
        splits = {p.splits(classes) for p in plans}
        assert splits == {-(-classes // (tiles_per_split * plans[0].block_c))} and max(splits) > 1
    for name, a, e in zip(("lse", "nontarget_sum", "target", "grad_xn", "grad_weight"), mine, expected):
        # The margin specs' float32 tolerance (tests/ops/specs_margin.py): sums over classes in another order.
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")


def test_runs_are_bitwise_equal(margin, monkeypatch):
    _with_splits(margin, monkeypatch, 1)
    xn, weight, labels = _problem(33, 150, 40)
    first = _statistics_and_grads("triton", xn, weight, labels)
    second = _statistics_and_grads("triton", xn, weight, labels)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_offsets_past_two_to_the_31_are_int64():
    """Class 2 of a weight view with row stride 2³⁰ starts at element 2³¹: int32 offset arithmetic
    wraps there (to a read before the tensor: a crash or garbage).

    The view lives in a 4 GiB float16 allocation that is never touched beyond its 3 rows, so it
    costs no memory; it runs in a subprocess so that a regression fails this test instead of
    crashing the test session."""
    script = textwrap.dedent("""
        import torch, torch.nn.functional as F
        import pyfacex.ops as ops
        d = 16
        try:
            storage = torch.empty(2**31 + d, dtype=torch.float16)
        except RuntimeError as e:
            print("SKIP", e)
            raise SystemExit(0)
        gen = torch.Generator().manual_seed(0)
        weight = storage.as_strided((3, d), (2**30, 1))
        weight.copy_(0.1 * torch.randn(3, d, generator=gen))
        xn = F.normalize(torch.randn(4, d, generator=gen), dim=1).half().requires_grad_()
        labels = torch.tensor([2, 0, -1, 2])
        _, target, slope = ops.margin_targets(xn, weight, labels, 8.0, m2=0.3)
        results = []
        for backend in ("triton", "reference"):
            w = weight.detach().requires_grad_()
            with ops.use_backend(backend):
                out = ops.cosine_logsumexp(xn, w, labels, target, slope, 8.0)
            lse = out.row_max + torch.log(out.sumexp)
            grads = torch.autograd.grad((lse + out.nontarget_sum).sum(), (xn, w))
            results.append([lse, out.nontarget_sum, *grads])
        for a, e in zip(*results):
            torch.testing.assert_close(a.float(), e.float(), rtol=2e-3, atol=2e-3)
        print("OK")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, TRITON_INTERPRET="1"))
    if done.stdout.startswith("SKIP"):
        pytest.skip(f"no 4 GiB of address space: {done.stdout}")
    assert done.returncode == 0 and "OK" in done.stdout, f"exit {done.returncode}:\n{done.stderr[-3000:]}"


def test_precision_option_reaches_forward_and_backward(margin, monkeypatch):
    """The float32 precision of the forward is the backward's too, even when the option changed in
    between (the op saves it); the default is ieee."""
    from pyfacex.triton.options import fp32_precision

    seen = []
    real = margin.plan

    def plan(dtype, precision, *args):
        seen.append(precision)
        return real(dtype, precision, *args)

    monkeypatch.setattr(margin, "plan", plan)
    xn, weight, labels = _problem(5, 20, 16)
    weight.requires_grad_()
    _, target, slope = ops.margin_targets(xn, weight, labels, S)
    with ops.use_backend("triton"):
        ops.cosine_logsumexp(xn, weight, labels, target, slope, S).sumexp.sum().backward()
        with fp32_precision("tf32x3"):
            out = ops.cosine_logsumexp(xn, weight, labels, target, slope, S)
    out.sumexp.sum().backward()  # outside the option
    assert seen == ["ieee", "ieee", "tf32x3", "tf32x3"]


def test_autocast_rounds_float32_operands_to_bfloat16():
    """Under CPU autocast (bf16), float32 inputs meet the dots as bf16 operands with float32
    accumulation, as an autocast GEMM: the statistics are those of the rounded operands (weight
    norms from the float32 weights), not those of the float32 ones."""
    xn, weight, labels = _problem(6, 40, 32, seed=4)
    _, target, slope = ops.margin_targets(xn, weight, labels, S)
    with ops.use_backend("triton"), torch.autocast("cpu", dtype=torch.bfloat16):
        out = ops.cosine_logsumexp(xn, weight, labels, target, slope, S)
    inv = 1 / weight.norm(dim=1)
    rounded = S * (xn.bfloat16().float() @ weight.bfloat16().float().t()) * inv
    exact = S * (xn @ weight.t()) * inv
    for z, close in ((rounded, True), (exact, False)):
        is_target = F.one_hot(labels.clamp(min=0), 40).bool() & (labels >= 0)[:, None]
        nontarget = z.masked_fill(is_target, 0).sum(1)
        if close:
            torch.testing.assert_close(out.nontarget_sum, nontarget, rtol=1e-5, atol=1e-5)
        else:
            assert (out.nontarget_sum - nontarget).abs().max() > 1e-3


@pytest.mark.parametrize("rows, classes, filter_threshold", [(5, 13, float("inf")), (5, 13, 0.1), (0, 4, float("inf"))])
def test_opcheck(margin, rows, classes, filter_threshold):
    xn, weight, labels = _problem(rows, classes, 8)
    _, target, slope = ops.margin_targets(xn, weight, labels, S)
    args = (xn, weight, labels, target, slope, S, filter_threshold, "ieee")
    torch.library.opcheck(torch.ops.pyfacex.triton_cosine_lse.default,
                          (xn.clone().requires_grad_(), weight.clone().requires_grad_(), *args[2:]))
    row_max, _, _, _, inv_norm = torch.ops.pyfacex.triton_cosine_lse(*args)
    grads = [torch.ones(rows)] * 3
    torch.library.opcheck(torch.ops.pyfacex.triton_cosine_lse_backward.default,
                          (*grads, xn, weight, inv_norm, labels, target, slope, row_max, S, filter_threshold, "ieee"))


def test_planner_rules(margin):
    """Every plan over a grid of problems and GPUs: splits within [1, class tiles], whole tiles per
    split, grad_xn's partials within 64 MiB (or a single split), blocks powers of two within their
    caps, and the same plan for the same arguments."""
    from pyfacex.triton._common import INTERPRETER, TARGETS, acc_dtype

    variants = [(torch.float32, p) for p in ("ieee", "tf32x3", "tf32", "bf16", "fp16")]
    variants += [(torch.float16, "ieee"), (torch.bfloat16, "ieee"), (torch.float64, "ieee")]
    for arch in (*TARGETS, INTERPRETER):
        for dtype, precision in variants:
            for b in (1, 7, 512, 4096):
                for c in (1, 13, 600, 100_000, 4_200_000):
                    for d in (1, 8, 64, 100, 512, 2048):
                        p = margin.plan(dtype, precision, b, c, d, arch)
                        assert p == margin.plan(dtype, precision, b, c, d, arch)
                        tiles = -(-c // p.block_c)
                        assert p.classes_per_split % p.block_c == 0
                        assert 1 <= p.splits(c) <= tiles
                        assert p.splits(c) == 1 or p.splits(c) * b * d * acc_dtype(dtype).itemsize <= 64 << 20
                        for block in (p.block_b, p.block_c, p.block_k, p.block_do):
                            assert block >= 16 and block & (block - 1) == 0
                        assert p.block_k <= max(16, d) * 2 and p.block_do <= max(16, d) * 2


def test_split_count_fills_the_gpu(margin):
    """B 512 (8 or 16 row blocks) over 100k classes: the forward grid has several programs per SM,
    where one class range per row block would leave most SMs idle."""
    from pyfacex.triton._common import SM80, SM90

    for arch in (SM80, SM90):
        p = margin.plan(torch.bfloat16, "ieee", 512, 100_000, 512, arch)
        programs = -(-512 // p.block_b) * p.splits(100_000)
        assert programs >= 2 * arch.sm_count
