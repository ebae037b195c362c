"""Offline resource test: every configuration the Triton planners can produce compiles for sm_80 and
sm_90 within the GPU's shared memory per block and without register spills.

The kernels compile in a subprocess (:mod:`pyfacex.triton.resources`): this process imported them
under TRITON_INTERPRET=1, which makes them interpreter functions that cannot be compiled. The default
run compiles the extreme sizes of every dtype (88 kernels, about a minute of one core on a cold
Triton cache, seconds on a warm one); the exhaustive enumeration (about 1500 kernels, about 25
minutes of one core) is marked ``slow`` and runs with PYFACEX_SLOW=1, on every core.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton", reason="triton is not installed (CPU-only torch): nothing to compile")

SLOW = os.environ.get("PYFACEX_SLOW") == "1"


def _compile(*flags: str) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-m", "pyfacex.triton.resources", "--json", *flags], env=env,
                          capture_output=True, text=True)
    if done.returncode not in (0, 1):  # 1: some configuration is over a limit (the tests say which)
        pytest.fail(f"the offline compile failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if isinstance(result, dict):
        pytest.skip(f"cannot compile offline: {result['unavailable']}")
    return result


def _over_limits(figures: list[dict]) -> list[str]:
    return [f"{f['kernel']} {f['dtype']}/{f['precision']} sizes {tuple(f['sizes'])} on {f['arch']}: shared "
            f"{f['shared']} B (limit {f['limit']}), stack {f['stack']} B, local {f['local']} B ({f['config']})"
            for f in figures if f["shared"] > f["limit"] or f["stack"] or f["local"]]


@pytest.fixture(scope="module")
def figures():
    return _compile()


def test_extreme_configurations_fit_sm80_and_sm90(figures):
    kernels = {(f["kernel"], f["arch"]) for f in figures}
    assert len(kernels) == 12, f"expected 6 kernels on 2 archs, got {sorted(kernels)}"
    assert {(f["dtype"], f["precision"]) for f in figures} >= {("fp32", "ieee"), ("fp16", "ieee"), ("bf16", "ieee"),
                                                               ("fp64", "ieee"), ("fp32", "tf32x3")}
    assert not _over_limits(figures), "\n".join(_over_limits(figures))


def _off_tensor_cores(figures: list[dict]) -> list[str]:
    """Kernels whose dots are not where their precision puts them: float32 ``ieee`` on the CUDA
    cores (the 1e-5 tolerance), every other variant (tf32, tf32x3, autocast operands, the 2-byte
    dtypes, float64) on mma/wgmma instructions."""
    return [f"{f['kernel']} {f['dtype']}/{f['precision']} on {f['arch']}: tensor cores {f['tensor_cores']}"
            for f in figures if f["tensor_cores"] == (f["dtype"] == "fp32" and f["precision"] == "ieee")]


def test_precision_reaches_the_tensor_cores(figures):
    assert not _off_tensor_cores(figures), "\n".join(_off_tensor_cores(figures))


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="exhaustive (about 25 minutes of compiles on one core): PYFACEX_SLOW=1 runs it")
def test_every_planner_configuration_fits_sm80_and_sm90():
    everything = _compile("--all", "--jobs", str(os.cpu_count() or 1))
    assert len(everything) > 1000
    assert not _over_limits(everything), "\n".join(_over_limits(everything))
    assert not _off_tensor_cores(everything), "\n".join(_off_tensor_cores(everything))
