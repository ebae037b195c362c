"""The Triton set-attention kernels under the interpreter: head dims cut into several chunks (the
score products' chunks and the outputs' chunks), and the planner's rules (tests/ops covers the op
contract at small head dims)."""
from __future__ import annotations

import pytest
import torch

import pyfacex.ops as ops

pytestmark = pytest.mark.usefixtures("interpreter_only")


def _run(backend, q, k, v, offsets):
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    with ops.use_backend(backend):
        out = ops.segment_softmax_attention(*leaves, offsets, 0.2)
    gen = torch.Generator().manual_seed(1)
    grads = torch.autograd.grad((out * torch.randn(out.shape, generator=gen)).sum(), leaves)
    return [out.detach(), *grads]


@pytest.mark.parametrize("dk, dv", [(40, 80), (80, 20)])
def test_chunked_head_dims_match_the_reference(dk, dv):
    """fp32 ieee plans 16-wide score chunks and 64-wide output chunks: dk 40 / dv 80 need 3 score
    chunks and 2 dv chunks (dK/dV programs past dk are masked); dk 80 needs 2 dk chunks."""
    from pyfacex.triton import attention

    p = attention.plan(torch.float32, "ieee", 20, dk, dv)
    chunks = (-(-dk // p.block_dk), -(-dv // p.block_dv))
    assert p.block_k == 16 and max(chunks) == 2
    gen = torch.Generator().manual_seed(0)
    offsets = torch.tensor([0, 3, 3, 20, 21])
    q, k = (torch.randn(21, dk, generator=gen) for _ in range(2))
    v = torch.randn(21, dv, generator=gen)
    for name, a, e in zip(("out", "grad_q", "grad_k", "grad_v"), _run("triton", q, k, v, offsets),
                          _run("reference", q, k, v, offsets)):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")


def test_opcheck():
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(6, 8, generator=gen) for _ in range(3))
    offsets = torch.tensor([0, 2, 6])
    torch.library.opcheck(torch.ops.pyfacex.triton_segment_attention.default,
                          (q.requires_grad_(), k, v, offsets, 0.5, "ieee"))
    out, lse = torch.ops.pyfacex.triton_segment_attention(q.detach(), k, v, offsets, 0.5, "ieee")
    torch.library.opcheck(torch.ops.pyfacex.triton_segment_attention_backward.default,
                          (torch.ones_like(out), q.detach(), k, v, offsets, out, lse, 0.5, "ieee"))


def test_planner_rules():
    """Every plan over a grid of problems: blocks powers of two within [16, cap], no wider than the
    problem needs, and the same plan for the same arguments."""
    from pyfacex.triton import attention

    variants = [(torch.float32, p) for p in ("ieee", "tf32x3", "tf32", "bf16", "fp16")]
    variants += [(torch.float16, "ieee"), (torch.bfloat16, "ieee"), (torch.float64, "ieee")]
    for dtype, precision in variants:
        for longest in (1, 20, 49, 980, 100_000):
            for dk in (1, 8, 64, 100, 512):
                for dv in (1, 8, 64, 100, 512):
                    p = attention.plan(dtype, precision, longest, dk, dv)
                    assert p == attention.plan(dtype, precision, longest, dk, dv)
                    for block in (p.block, p.block_k, p.block_dk, p.block_dv):
                        assert block >= 16 and block & (block - 1) == 0
                    assert p.block <= max(16, 2 * longest)
                    assert p.block_k <= max(16, 2 * max(dk, dv))
                    assert p.block_dk <= max(16, 2 * dk) and p.block_dv <= max(16, 2 * dv)
