"""``pyfacex.ops.sync_free``: no op reads tensor values on the host inside it (the path for CUDA-graph
capture), and the results equal the checked eager ones."""
from __future__ import annotations

import pytest
import torch

import pyfacex.ops as ops


def _no_host_reads(patch):
    """Make every way Python reads a tensor's values raise."""
    def refuse(*args, **kwargs):
        raise AssertionError("a tensor value was read on the host")

    for name in ("tolist", "item", "__bool__", "__int__", "__float__", "__index__"):
        patch.setattr(torch.Tensor, name, refuse)


def _calls():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, 2, 2, generator=gen)
    offsets = torch.tensor([0, 2, 2, 7])  # an empty set in the middle
    w_q, w_k, w_v = (torch.randn(s, generator=gen) for s in ((2, 3), (2, 3), (3, 3)))
    emb, weight = torch.randn(5, 4, generator=gen), torch.randn(6, 4, generator=gen)
    labels = torch.tensor([0, 5, -1, 2, 2])
    return {
        "global_concat": lambda: ops.global_concat(x, offsets),
        "set_max": lambda: ops.set_max(x, torch.tensor([0, 2, 7])),
        "lit_attention": lambda: ops.lit_attention(x, offsets, w_q, w_k, w_v, segment=2),
        "margin_cross_entropy": lambda: ops.margin_cross_entropy(emb, weight, labels),
        "lgaf_fusion": lambda: ops.lgaf_fusion(emb, 2 * emb, torch.tensor([1.0, 0.5, 2.0, 0.5])),
    }


@pytest.mark.parametrize("name", list(_calls()))
def test_no_host_reads_and_the_same_results(name, monkeypatch):
    call = _calls()[name]
    expected = call()
    with monkeypatch.context() as patch:
        _no_host_reads(patch)
        with pytest.raises(AssertionError, match="read on the host"):
            bool(torch.ones(1))
        with ops.sync_free():
            actual = call()
    for a, e in zip(actual if isinstance(actual, tuple) else (actual,),
                    expected if isinstance(expected, tuple) else (expected,)):
        torch.testing.assert_close(a, e)


def test_checks_are_back_after_the_block():
    with ops.sync_free():
        pass
    with pytest.raises(ValueError, match="every label is -1"):
        ops.margin_cross_entropy(torch.randn(2, 3), torch.randn(4, 3), torch.tensor([-1, -1]))


@pytest.mark.skipif("triton" not in ops.available_backends("cpu"), reason="needs triton (interpreter)")
def test_triton_attention_plans_on_the_device(monkeypatch):
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(70, 16, generator=gen, requires_grad=True) for _ in range(3))
    offsets = torch.tensor([0, 3, 3, 40, 70])  # an empty segment; segments longer than one block
    with ops.use_backend("triton"):
        expected = ops.segment_softmax_attention(q, k, v, offsets)
        expected_grads = torch.autograd.grad(expected.sum(), (q, k, v))
        with monkeypatch.context() as patch:
            _no_host_reads(patch)
            with ops.sync_free():
                actual = ops.segment_softmax_attention(q, k, v, offsets)
                grads = torch.autograd.grad(actual.sum(), (q, k, v))
        torch.testing.assert_close(actual, expected)
        for a, e in zip(grads, expected_grads):
            torch.testing.assert_close(a, e)
        with ops.sync_free():  # offsets past N: NaN, never a read out of bounds
            assert torch.isnan(ops.segment_softmax_attention(q, k, v, torch.tensor([0, 3, 90]))).all()
