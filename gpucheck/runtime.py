"""How the ops behave inside real programs: bitwise determinism, a side stream, torch.compile,
CUDA-graph capture (through ``pyfacex.ops.sync_free``), and bad offsets that no host check sees."""
from __future__ import annotations

import math

import torch

import pyfacex.ops as ops
from pyfacex.nn import LocalInformationTransfer

from .harness import Run, Skip, random, require_triton


def determinism(run: Run, gen: torch.Generator) -> None:
    """Two runs of each backward give the same bits (no atomics in the reductions)."""
    dev = run.device
    rows = run.size(256, 48)
    x0, w0 = random(gen, dev, rows, 128), random(gen, dev, run.size(3000, 100), 128, scale=0.1)
    labels = torch.randint(0, w0.shape[0], (rows,), generator=gen).to(dev)

    def margin():
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        ops.margin_cross_entropy(x, w, labels).backward()
        return x.grad, w.grad

    def attention():
        q, k, v = (t.clone().requires_grad_() for t in (x0[:, :64], x0[:, 64:], x0[:, 32:96]))
        offsets = torch.tensor([0, rows // 3, rows // 3 + 1, rows], device=dev)  # with a segment of one
        ops.segment_softmax_attention(q, k, v, offsets).sum().backward()
        return q.grad, k.grad, v.grad

    def twice(fn):
        first, second = fn(), fn()
        assert all(torch.equal(a, b) for a, b in zip(first, second)), "two runs differ"
        return "bitwise equal"

    for backend in ("auto", "triton"):
        for name, fn in (("margin_cross_entropy", margin), ("segment_softmax_attention", attention)):
            def body(backend=backend, fn=fn):
                if backend == "triton":
                    require_triton()
                with ops.use_backend(backend):
                    return twice(fn)
            run.check(f"determinism {name} ({backend}) forward + backward", body)


def side_stream(run: Run, gen: torch.Generator) -> None:
    def body():
        if run.device.type != "cuda":
            raise Skip("needs CUDA streams")
        x = random(gen, run.device, 4096, 64, 28)
        offsets = torch.arange(0, 4097, 8, device=run.device)
        expected = ops.global_concat(x, offsets)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            produced = torch.empty_like(x).copy_(x)  # made on the side stream, so the op must run there
            out = ops.global_concat(produced, offsets)
        stream.synchronize()
        assert torch.equal(out, expected)
        return "the kernels run on the current stream"

    run.check("global_concat on a side stream", body)


def compiled(run: Run, gen: torch.Generator) -> None:
    """torch.compile: one graph where promised, the fake kernels' strides, θ segmentation, and
    undefined sets giving NaN instead of reading out of bounds."""
    dev = run.device

    def margin_one_graph():
        x, w = (random(gen, dev, 64, 128).requires_grad_(),
                random(gen, dev, run.size(1000, 50), 128, scale=0.1).requires_grad_())
        labels = torch.randint(0, w.shape[0], (64,), generator=gen).to(dev)
        loss = lambda x, w: ops.margin_cross_entropy(x, w, labels)  # noqa: E731
        torch._dynamo.reset()
        actual, expected = torch.compile(loss, fullgraph=True, backend=run.compile_backend)(x, w), loss(x, w)
        torch.testing.assert_close(actual, expected)
        for a, e in zip(torch.autograd.grad(actual, (x, w)), torch.autograd.grad(expected, (x, w))):
            torch.testing.assert_close(a, e)
        return "fullgraph, forward and backward equal eager"

    def channels_last_sets():
        def loss(x, offsets):
            return ops.global_concat(x, offsets).relu().sum() + ops.set_max(x, offsets).square().sum()

        x = random(gen, dev, 6, 8, 4, 4).to(memory_format=torch.channels_last).requires_grad_()
        offsets = torch.tensor([0, 2, 6], device=dev)
        torch._dynamo.reset()
        out = torch.compile(loss, backend=run.compile_backend)(x, offsets)
        (actual,) = torch.autograd.grad(out, x)
        (expected,) = torch.autograd.grad(loss(x, offsets), x)
        torch.testing.assert_close(actual, expected)
        return "compiled backward equals eager"

    def lit_segments():
        lit = LocalInformationTransfer(16, segment=2).to(dev).eval()
        with torch.no_grad():
            lit.value.weight.copy_(random(gen, dev, 16, 16))  # the LIT starts as the identity (V = 0)
        x = random(gen, dev, 5, 16, 3, 3)
        offsets = torch.tensor([0, 5], device=dev)
        torch._dynamo.reset()
        with torch.no_grad():
            torch.testing.assert_close(torch.compile(lit, backend=run.compile_backend)(x, offsets), lit(x, offsets))
        return "θ = 2 honoured"

    def undefined_sets():
        if dev.type == "cpu":
            raise Skip("the CPU kernels read the offsets and raise instead")
        x = random(gen, dev, 6, 3)
        bad = {"empty set": torch.tensor([0, 3, 3, 6], device=dev),
               "offsets[-1] > N": torch.tensor([0, 3, 9], device=dev)}
        torch._dynamo.reset()
        set_max = torch.compile(lambda x, o: ops.set_max(x, o), backend=run.compile_backend)
        out = {name: set_max(x, offsets) for name, offsets in bad.items()}
        assert torch.isnan(out["empty set"][1]).all() and not torch.isnan(out["empty set"][[0, 2]]).any()
        assert torch.isnan(out["offsets[-1] > N"]).all()
        return "NaN rows, no out-of-bounds read"

    run.check("torch.compile margin_cross_entropy as one graph", margin_one_graph)
    run.check("torch.compile sets forward + backward with channels_last x", channels_last_sets)
    run.check("torch.compile LIT with θ segmentation equals eager", lit_segments)
    run.check("torch.compile set_max with an empty set / offsets past N", undefined_sets)


def captured(run: Run, gen: torch.Generator) -> None:
    """CUDA-graph capture of a training step's ops inside ``sync_free`` (no host sync in them)."""
    dev = run.device

    def body():
        if dev.type != "cuda":
            raise Skip("needs CUDA graphs")
        x = random(gen, dev, 12, 16, 3, 3)
        offsets = torch.tensor([0, 5, 12], device=dev)
        emb, weight = random(gen, dev, 32, 64), random(gen, dev, 500, 64, scale=0.1)
        labels = torch.randint(0, 500, (32,), generator=gen).to(dev)
        w_q, w_k, w_v = random(gen, dev, 8, 16), random(gen, dev, 8, 16), random(gen, dev, 16, 16)

        def step():
            return (ops.global_concat(x, offsets).sum(), ops.set_max(x, offsets).sum(),
                    ops.lit_attention(x, offsets, w_q, w_k, w_v, segment=2).sum(),
                    ops.margin_cross_entropy(emb, weight, labels))

        expected = step()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), ops.sync_free():
            step()  # warm-up on the side stream, as CUDA graphs require
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with ops.sync_free(), torch.cuda.graph(graph):
            outputs = step()
        graph.replay()
        for a, e in zip(outputs, expected):
            assert math.isclose(a.item(), e.item(), rel_tol=1e-4), (a.item(), e.item())
        return "captured and replayed; equal to eager"

    run.check("CUDA-graph capture of sets, LIT and margin ops under sync_free", body)
