"""Shared benchmark plumbing: one call of :func:`run` per (group, impl) benchmark.

Every benchmark records its implementation name and the peak memory of one call in
``benchmark.extra_info``, so that ``report.py`` can put implementations side by side per group.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

# Rounds of benchmark.pedantic (used only when a setup must run before every call): pedantic does
# not calibrate, and ops here take milliseconds, so a fixed count keeps the median steady.
PEDANTIC_ROUNDS = 20


def run(benchmark, fn: Callable, *, group: str, impl: str, setup: Callable | None = None, rounds: int | None = None):
    """Times ``fn`` in ``group`` under the name ``impl`` and records its peak extra memory.

    Args:
        benchmark: the pytest-benchmark fixture.
        fn: the call to measure. With ``setup``, called as ``fn(*args, **kwargs)`` on what setup returns.
        group: ``f"{op}|{shape}"``; the report makes one table per group.
        impl: the implementation's name in that table (``eager`` and ``floor-clone`` are the
            references the report divides by).
        setup: optional, as in ``benchmark.pedantic``: returns ``(args, kwargs)`` for one call and is
            not timed.
        rounds: a fixed number of timed rounds (no calibration), for calls of many seconds whose
            memory is the point.

    Under ``--benchmark-disable`` fn runs once and no memory is measured (CI only checks it runs).
    """
    benchmark.group = group
    benchmark.extra_info["impl"] = impl
    if not benchmark.disabled:
        _prepared(fn, setup)()  # warm-up: lazy initialisation and torch.compile are not the op's memory
        benchmark.extra_info["peak_bytes"] = peak_bytes(_prepared(fn, setup))
    if setup is None and rounds is None:
        return benchmark(fn)
    return benchmark.pedantic(fn, setup=setup, rounds=rounds or PEDANTIC_ROUNDS, warmup_rounds=0 if rounds else 1)


def _prepared(fn: Callable, setup: Callable | None) -> Callable[[], object]:
    """fn with its setup already run: what setup allocates is not the op's memory. A fresh setup
    per call, since an op may consume or modify its inputs."""
    if setup is None:
        return fn
    args, kwargs = setup()
    return functools.partial(fn, *args, **kwargs)


def peak_bytes(call: Callable[[], object]) -> int:
    """Peak bytes allocated above what was live before, during one ``call()`` (its result included).

    CPU: the profiler records every allocation and free of torch's CPU allocator (which caches
    nothing, so each is real); the peak is the maximum of their running sum in time order.
    CUDA (when present): torch.cuda.max_memory_allocated. The larger of the two is returned: an
    op's own device dominates, the other holds at most small index tensors.
    """
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_base = torch.cuda.memory_allocated()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    cpu_peak = _cpu_peak(prof)
    if not cuda:
        return cpu_peak
    torch.cuda.synchronize()
    return max(cpu_peak, torch.cuda.max_memory_allocated() - cuda_base)


def _cpu_peak(prof: profile) -> int:
    # The raw (kineto) events: FunctionEvent.cpu_memory_usage folds allocations into op totals and
    # loses their order. These are the records torch's own profiler tables are built from.
    cpu = torch._C._autograd.DeviceType.CPU
    records = sorted(
        (event.start_ns(), event.nbytes())
        for event in prof.profiler.kineto_results.events()
        if event.name() == "[memory]" and event.device_type() == cpu
    )
    live = peak = 0
    for _, nbytes in records:
        live += nbytes
        peak = max(peak, live)
    return peak


def floor_clone(nbytes: int, device: torch.device | str = "cpu") -> Callable[[], torch.Tensor]:
    """The bandwidth floor: a function cloning ``nbytes`` bytes (reads nbytes, writes nbytes).

    An op that must read R bytes and write W bytes compares with ``floor_clone((R + W) // 2)``.
    """
    # Filled, not torch.empty: untouched pages read as the shared zero page, faster than memory.
    source = torch.ones(nbytes, dtype=torch.uint8, device=device)
    return source.clone


@functools.cache
def compiled(fn: Callable) -> Callable:
    """``torch.compile(fn)``, built once per function; shapes are specialised (no dynamic kernels)."""
    return torch.compile(fn, dynamic=False)


def first_call_or_skip(call: Callable[[], object], what: str) -> None:
    """Calls ``call`` once (for a compiled function: compiles it) and skips the test if that fails.

    torch.compile needs a working C++ compiler and may not support an op; that is a missing
    comparison, not a pyfacex failure.
    """
    try:
        call()
    except Exception as error:  # noqa: BLE001 - any compile failure means "not comparable here"
        pytest.skip(f"{what} failed: {type(error).__name__}: {error}".splitlines()[0])
