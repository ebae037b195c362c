"""Production-shape parity: the Triton kernels against a float64 reference, the CUDA kernels against
the CPU kernels (also at grid-stride sizes, over 2³¹ elements and in float64)."""
from __future__ import annotations

import torch

import pyfacex.ops as ops
from pyfacex import _ext

from .harness import LIMITS, Run, Skip, random, relative_error, require_triton

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _margin(run: Run, gen: torch.Generator, dtype: torch.dtype, batch: int, classes: int, dim: int) -> str:
    require_triton()
    x = random(gen, run.device, batch, dim, dtype=dtype, scale=3.0)
    w = random(gen, run.device, classes, dim, dtype=dtype, scale=0.1)
    labels = torch.randint(0, classes, (batch,), generator=gen).to(run.device)
    labels[1] = -1
    results = {}
    for backend, as_dtype in (("triton", dtype), ("reference", torch.float64)):
        xx, ww = (t.detach().to(as_dtype).requires_grad_() for t in (x, w))
        with ops.use_backend(backend):
            loss = ops.margin_cross_entropy(xx, ww, labels, s=64.0, m2=0.5)
        loss.backward()
        results[backend] = (loss, xx.grad, ww.grad)
    errors = [relative_error(a, e) for a, e in zip(results["triton"], results["reference"])]
    assert max(errors) < LIMITS[dtype], f"relative errors loss/grad x/grad W {errors} > {LIMITS[dtype]}"
    return "relative errors loss/grad x/grad W " + ", ".join(f"{e:.1e}" for e in errors)


def _attention(run: Run, gen: torch.Generator, dtype: torch.dtype, sets: int, tokens: int, dk: int, dv: int) -> str:
    require_triton()
    n = sets * tokens
    q, k = (random(gen, run.device, n, dk, dtype=dtype, scale=0.3) for _ in range(2))
    v = random(gen, run.device, n, dv, dtype=dtype)
    offsets = torch.arange(sets + 1, device=run.device) * tokens
    weights = random(gen, run.device, n, dv, dtype=torch.float64)
    results = {}
    for backend, as_dtype in (("triton", dtype), ("reference", torch.float64)):
        qq, kk, vv = (t.detach().to(as_dtype).requires_grad_() for t in (q, k, v))
        with ops.use_backend(backend):
            out = ops.segment_softmax_attention(qq, kk, vv, offsets)
        (out.double() * weights).sum().backward()
        results[backend] = (out, qq.grad, kk.grad, vv.grad)
    errors = [relative_error(a, e) for a, e in zip(results["triton"], results["reference"])]
    assert max(errors) < LIMITS[dtype], f"relative errors out/grad q/k/v {errors} > {LIMITS[dtype]}"
    return "relative errors out/grad q/k/v " + ", ".join(f"{e:.1e}" for e in errors)


def triton_production(run: Run, gen: torch.Generator) -> None:
    """The margin loss at B 512, C 100k, d 512 (and d 2048), LFENet's attention at 6k tokens."""
    batch, classes, dim = run.size(512, 40), run.size(100_000, 300), run.size(512, 64)
    for dtype in DTYPES:
        run.check(f"margin triton {dtype} B{batch} C{classes} d{dim} vs float64",
                  lambda dtype=dtype: _margin(run, gen, dtype, batch, classes, dim))
    wide = run.size(2048, 128)
    run.check(f"margin triton float32 B64 C4096 d{wide} vs float64",
              lambda: _margin(run, gen, torch.float32, 64, run.size(4096, 64), wide))
    # LFENet on IR-SE-50: 512 channels, qk_dim 256, 7x7 = 49 tokens per image, sets of 3 images, 42 sets
    sets, tokens = run.size(42, 3), run.size(147, 40)
    dk, dv = run.size(256, 32), run.size(512, 64)
    for dtype in DTYPES:
        run.check(f"attention triton softmax_b {dtype} N{sets * tokens} dk{dk} dv{dv} vs float64",
                  lambda dtype=dtype: _attention(run, gen, dtype, sets, tokens, dk, dv))
        run.check(f"attention triton softmax_a {dtype} N{sets * tokens} dk=dv={dv} vs float64",
                  lambda dtype=dtype: _attention(run, gen, dtype, sets, tokens, dv, dv))


def _native_on_both(fn, *args, exact: bool, tol: float = 1e-5) -> str:
    """``fn`` on the native backend with ``args`` where they are and on the CPU: equal outputs."""
    with ops.use_backend("native"):
        here = fn(*args)
        cpu = fn(*[a.cpu() if isinstance(a, torch.Tensor) else a for a in args])
    here, cpu = (o if isinstance(o, (tuple, list)) else (o,) for o in (here, cpu))
    for i, (a, e) in enumerate(zip(here, cpu)):
        if exact:
            assert torch.equal(a.cpu(), e), f"output {i} differs"
        else:
            torch.testing.assert_close(a.cpu().double(), e.double(), rtol=tol, atol=tol, equal_nan=True)
    return "bitwise equal" if exact else f"equal within {tol:g}"


def _require_native(run: Run) -> None:
    if run.device.type == "cuda" and not _ext.native.cuda_kernels:
        raise Skip(f"no CUDA kernels: {ops.native_unavailable_reason('cuda')}")
    if not _ext.native.loaded:
        raise Skip(_ext.native.reason)


def native_parity(run: Run, gen: torch.Generator) -> None:
    """The CUDA kernels of the sets and quality families equal the CPU kernels, also where the grid
    strides (more sets than gridDim.y, more features than gridDim.x covers), past 2³¹ elements, and
    in float64 (h and λ reach the CUDA kernels as doubles)."""
    dev = run.device

    def sets_grid_y():
        _require_native(run)
        sets = run.size(70_000, 40)
        x = random(gen, dev, 2 * sets, 8, dtype=torch.float16)
        offsets = torch.arange(sets + 1, device=dev) * 2
        return _native_on_both(ops.set_max, x, offsets, exact=True) + "; " + _native_on_both(
            ops.global_concat, x[:, :, None].contiguous(), offsets, exact=True)

    def sets_grid_x():
        _require_native(run)
        x = random(gen, dev, 6, 2, run.size(1024, 8), run.size(600, 5), dtype=torch.bfloat16)
        return _native_on_both(ops.global_concat, x, torch.tensor([0, 2, 6], device=dev), exact=True)

    def nan_and_ties():
        _require_native(run)
        x = torch.tensor([[1.0], [float("nan")], [float("nan")], [9.0], [2.0], [2.0]], device=dev, requires_grad=True)
        with ops.use_backend("native"):
            maxima = ops.set_max(x, torch.tensor([0, 4, 6], device=dev))
        maxima.sum().backward()
        assert torch.isnan(maxima[0]).all() and maxima[1].item() == 2.0, maxima
        assert x.grad.flatten().tolist() == [0, 1, 0, 0, 1, 0], x.grad.flatten().tolist()
        return "first NaN, then first of equal maxima, gets the gradient"

    stats = torch.tensor([4.0, 1.0, 3.0, 0.5], device=dev)

    def quality_rows(dtype):
        _require_native(run)
        rows, dim = run.size(600_000, 50), 64
        local, global_ = (random(gen, dev, rows, dim, scale=0.5, dtype=dtype),
                          random(gen, dev, rows, dim, scale=0.4, dtype=dtype))
        weight, memory = random(gen, dev, rows, dim, dtype=dtype), random(gen, dev, rows, dim, scale=0.3, dtype=dtype)
        stamps = torch.tensor([-1, 10, 5, 4, 0, 9], device=dev).repeat(rows // 6 + 1)[:rows]
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        return (_native_on_both(lambda *a: ops.lgaf_fusion(*a, h=0.333), local, global_, stats, exact=False, tol=tol)
                + "; " + _native_on_both(lambda *a: ops.memory_inject(*a, vpl=True, lam=0.15), weight, memory, stamps,
                                         10, 5, exact=False, tol=tol))

    def memory_write():
        _require_native(run)
        classes, batch = run.size(1000, 30), run.size(8192, 64)
        memory, stamps = random(gen, dev, classes, 128), torch.full((classes,), -1, device=dev)
        features = random(gen, dev, batch, 128, scale=5.0)
        labels = torch.randint(-1, classes, (batch,), generator=gen).to(dev)
        scale = torch.rand(batch, generator=gen).to(dev)
        memory_cpu, stamps_cpu = memory.cpu().clone(), stamps.cpu().clone()
        with ops.use_backend("native"):
            ops.memory_write_(memory, stamps, features, labels, scale, 7)
            ops.memory_write_(memory_cpu, stamps_cpu, features.cpu(), labels.cpu(), scale.cpu(), 7)
        torch.testing.assert_close(memory.cpu(), memory_cpu, rtol=1e-5, atol=1e-6)
        assert torch.equal(stamps.cpu(), stamps_cpu)
        return "last writer of a class wins on both"

    def past_int32():
        _require_native(run)
        if run.dry:
            raise Skip("needs 2 x 2^30 half elements (4 GiB): GPU only")
        features = (1 << 30) + 64
        x = torch.empty(2, features, dtype=torch.float16, device=dev)
        x[0].fill_(1.0)
        x[1].fill_(2.0)
        x[0, -5:] = 3.0
        with ops.use_backend("native"):
            maxima = ops.set_max(x, torch.tensor([0, 2], device=dev))
        assert maxima[0, :10].eq(2).all() and maxima[0, -5:].eq(3).all() and maxima[0, -6].item() == 2.0
        rows = (1 << 22) + 3
        local = torch.ones(rows, 512, dtype=torch.float16, device=dev)
        local[-1].mul_(2)
        with ops.use_backend("native"):
            kappa, gamma = ops.lgaf_fusion(local, local, stats, 0.333)
        ref_kappa, ref_gamma = ops.quality.lgaf_fusion_reference(local[-2:].float(), local[-2:].float(), stats, 0.333)
        torch.testing.assert_close(kappa[-2:].float(), ref_kappa, rtol=2e-3, atol=2e-3)
        torch.testing.assert_close(gamma[-2:].float(), ref_gamma, rtol=2e-3, atol=2e-3)
        return "set_max and lgaf_fusion index past 2^31 elements"

    run.check("native sets: more sets than gridDim.y (70k), cuda == cpu", sets_grid_y)
    run.check("native global_concat: 1.2M features (past gridDim.x), cuda == cpu", sets_grid_x)
    run.check("native set_max: NaN and tie gradient rule on the device", nan_and_ties)
    run.check("native quality float32: 600k rows (row grid-stride), cuda == cpu", lambda: quality_rows(torch.float32))
    run.check("native quality float64 at 1e-12: cuda == cpu", lambda: quality_rows(torch.float64))
    run.check("native memory_write_: 8k samples with repeated classes, cuda == cpu", memory_write)
    run.check("native sets and quality past 2^31 elements (int64 indexing)", past_int32)


__all__ = ["triton_production", "native_parity"]
