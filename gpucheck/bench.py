"""Benchmarks of the GPU paths, each as a ratio against what a user would otherwise run (eager
PyTorch, ``torch.compile`` of it, a per-set loop) and against a floor (the bare GEMMs, a clone of the
same bytes), with the targets of bench/README.md ("GPU"). Reported as INFO lines, never asserted: a
missed target is a finding to write down, not a failed check."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

import pyfacex.ops as ops

from .harness import Run, random


def _milliseconds(run: Run, fn: Callable[[], object]) -> float:
    """Median time of ``fn``: triton's do_bench on a GPU, a few perf_counter runs on a CPU."""
    if run.device.type == "cuda":
        from triton.testing import do_bench

        return do_bench(fn, warmup=10, rep=50)
    fn()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def _extra_peak_mib(run: Run, fn: Callable[[], object]) -> float | None:
    """Peak memory ``fn`` allocates beyond what is live when it starts (GPU only)."""
    if run.device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def margin(run: Run, gen: torch.Generator) -> None:
    """Fused margin loss forward + backward against eager, compiled eager and three bare GEMMs.
    Targets (bf16, B 512, C 100k, d 512): ≤ 1.3× the GEMMs, ≤ 1/4 of eager's extra peak memory."""
    batch, classes, dim = run.size(512, 32), run.size(100_000, 200), run.size(512, 32)
    for dtype in (torch.float32, torch.bfloat16):
        x = random(gen, run.device, batch, dim, dtype=dtype).requires_grad_()
        w = random(gen, run.device, classes, dim, dtype=dtype, scale=0.1).requires_grad_()
        labels = torch.randint(0, classes, (batch,), generator=gen).to(run.device)

        def step(backend: str, loss_fn=ops.margin_cross_entropy):
            with ops.use_backend(backend):
                loss = loss_fn(x, w, labels)
            loss.backward()
            x.grad = w.grad = None

        def eager_loss(x, w, labels):
            cos = torch.nn.functional.normalize(x) @ torch.nn.functional.normalize(w).t()
            return torch.nn.functional.cross_entropy(ops.margin_logits(cos, labels), labels)

        compiled_loss = torch.compile(eager_loss, backend=run.compile_backend)
        xd, wd = x.detach(), w.detach()
        gemms = lambda: (xd @ wd.t(), (xd @ wd.t()) @ wd, (xd @ wd.t()).t() @ xd)  # noqa: E731 - fwd, grad x, grad W
        timings = {"fused": _milliseconds(run, lambda: step("auto")),
                   "eager": _milliseconds(run, lambda: step("auto", eager_loss)),
                   "compiled eager": _milliseconds(run, lambda: step("auto", compiled_loss)),
                   "3 GEMMs": _milliseconds(run, gemms)}
        peaks = {"fused": _extra_peak_mib(run, lambda: step("auto")),
                 "eager": _extra_peak_mib(run, lambda: step("auto", eager_loss))}
        fused = timings.pop("fused")
        others = ", ".join(f"{name} {ms:.3f} ms ({ms / fused:.2f}x the fused time)" for name, ms in timings.items())
        memory = ("" if peaks["fused"] is None else
                  f"; extra peak fused {peaks['fused']:.0f} MiB vs eager {peaks['eager']:.0f} MiB "
                  f"({peaks['fused'] / max(peaks['eager'], 1e-9):.2f}x, target <= 0.25x)")
        run.report("INFO", f"bench margin fwd+bwd {dtype} B{batch} C{classes} d{dim}",
                   f"fused {fused:.3f} ms; {others}; fused = {fused / timings['3 GEMMs']:.2f}x the GEMMs (target "
                   f"<= 1.3x in bfloat16){memory}")


def attention(run: Run, gen: torch.Generator) -> None:
    """LIT attention on 64 ragged sets against the per-set loop a user would write (target ≥ 3×)."""
    sizes = torch.randint(1, run.size(21, 4), (64,), generator=gen) * 49
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), sizes.cumsum(0)]).to(run.device)
    n, dk, dv = int(sizes.sum()), run.size(256, 16), run.size(512, 32)
    dtype = torch.bfloat16 if run.device.type == "cuda" else torch.float32
    q, k = (random(gen, run.device, n, dk, dtype=dtype, scale=0.3) for _ in range(2))
    v = random(gen, run.device, n, dv, dtype=dtype)
    bounds = offsets.tolist()

    def one_call():
        return ops.segment_softmax_attention(q, k, v, offsets)

    def loop():
        return torch.cat([torch.softmax(q[a:b] @ k[a:b].t(), dim=1) @ v[a:b] for a, b in zip(bounds[:-1], bounds[1:])])

    ms_call, ms_loop = _milliseconds(run, one_call), _milliseconds(run, loop)
    run.report("INFO", f"bench LIT attention forward {dtype} 64 sets N{n} dk{dk} dv{dv}",
               f"one call {ms_call:.3f} ms, per-set loop {ms_loop:.3f} ms: {ms_loop / ms_call:.2f}x (target >= 3x)")


def bandwidth(run: Run, gen: torch.Generator) -> None:
    """global_concat and memory_inject against a clone of the same bytes (target ≥ 70 %)."""
    x = random(gen, run.device, 64 * 6, 64, run.size(56, 4), run.size(56, 4), dtype=torch.float16)
    offsets = torch.arange(65, device=run.device) * 6
    # 1 read + 2 writes = 1.5x read + 1.5x write
    moved = torch.empty(3 * x.numel() // 2, dtype=x.dtype, device=run.device)
    ms_op, ms_clone = _milliseconds(run, lambda: ops.global_concat(x, offsets)), _milliseconds(run, moved.clone)
    run.report("INFO", f"bench global_concat {tuple(x.shape)} float16",
               f"{ms_op:.3f} ms, clone of the same bytes {ms_clone:.3f} ms: {100 * ms_clone / ms_op:.0f} % of clone "
               "bandwidth (target >= 70 %)")
    rows, dim = run.size(1_000_000, 1000), run.size(512, 32)
    w, memory = random(gen, run.device, rows, dim), random(gen, run.device, rows, dim, scale=0.3)
    stamps = torch.tensor([-1, 10, 5, 4, 0, 9], device=run.device).repeat(rows // 6 + 1)[:rows]
    both = torch.cat([w, memory])  # the op reads two (C, d) tensors and writes one: clone 1.5x of w's bytes
    ms_op = _milliseconds(run, lambda: ops.memory_inject(w, memory, stamps, 10, 5, vpl=True))
    ms_clone = _milliseconds(run, lambda: both[: 3 * rows // 2].clone())
    run.report("INFO", f"bench memory_inject (VPL) C{rows} d{dim} float32",
               f"{ms_op:.3f} ms, clone of the same bytes {ms_clone:.3f} ms: {100 * ms_clone / ms_op:.0f} % of clone "
               "bandwidth (target >= 70 %)")
