"""pyfacex.triton.options: the float32 precision option, autocast operands, and the compute
capability check (a monkeypatched capability stands in for an older GPU)."""
from __future__ import annotations

import pytest
import torch

import pyfacex.ops as ops
from pyfacex.ops import _backend
from pyfacex.ops._backend import Kernels
from pyfacex.triton import options


@pytest.fixture
def capability(monkeypatch):
    """Set the capability torch reports for cuda:0."""

    def set_capability(major, minor):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")

    return set_capability


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_bf16_and_fp64_need_sm80(capability, dtype):
    capability(7, 5)
    reason = options.unsupported_reason(dtype, "cuda:0")
    assert str(dtype) in reason and "7.5" in reason and "8.0" in reason
    capability(8, 0)
    assert options.unsupported_reason(dtype, "cuda:0") == ""


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_fp32_and_fp16_run_before_sm80(capability, dtype):
    capability(7, 5)
    assert options.unsupported_reason(dtype, "cuda:0") == ""


def test_cpu_tensors_have_no_capability_limit(capability):
    capability(7, 0)  # not read: CPU tensors run under the interpreter
    assert options.unsupported_reason(torch.bfloat16, "cpu") == ""


def test_auto_skips_triton_and_explicit_triton_raises(capability, monkeypatch):
    capability(7, 5)
    monkeypatch.setattr(_backend, "_triton_usable", lambda device: True)
    monkeypatch.setattr(_backend, "_native_usable", lambda device: True)
    kernels = Kernels(("native", "triton"), native_devices=("cpu", "cuda"))
    cuda = torch.device("cuda:0")
    assert _backend.resolve("margin_cross_entropy", kernels, cuda, torch.bfloat16) == "native"
    assert _backend.resolve("margin_cross_entropy", kernels, cuda, torch.float16) == "triton"
    assert "triton" not in ops.available_backends(cuda, op="margin_cross_entropy", dtype=torch.float64)
    assert "triton" in ops.available_backends(cuda, op="margin_cross_entropy", dtype=torch.float32)
    with ops.use_backend("triton"), pytest.raises(
            RuntimeError, match=r"margin_cross_entropy: the triton backend .*torch.float64.* has 7\.5"):
        _backend.resolve("margin_cross_entropy", kernels, cuda, torch.float64)


def test_fp32_precision_option():
    assert options.current_fp32_precision() == "ieee"
    with options.fp32_precision("tf32"):
        assert options.kernel_precision(torch.float32, torch.device("cpu")) == "tf32"
        assert options.kernel_precision(torch.float16, torch.device("cpu")) == "ieee"  # its own dtype
        with options.fp32_precision("tf32x3"):
            assert options.current_fp32_precision() == "tf32x3"
        assert options.current_fp32_precision() == "tf32"
    assert options.current_fp32_precision() == "ieee"
    with pytest.raises(ValueError, match="fp32 precision must be one of"):
        with options.fp32_precision("bf16"):
            pass


def test_autocast_dtype_is_the_operand_dtype_of_float32_inputs():
    cpu = torch.device("cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert options.kernel_precision(torch.float32, cpu) == "bf16"
        assert options.kernel_precision(torch.float64, cpu) == "ieee"  # autocast leaves float64 alone
    with torch.autocast("cpu", dtype=torch.float16):
        assert options.kernel_precision(torch.float32, cpu) == "fp16"


def test_precision_argument_is_checked():
    options.check_precision("tf32x3", torch.float32)
    with pytest.raises(ValueError, match=r"precision must be one of \('ieee',\) for torch.float16"):
        options.check_precision("tf32", torch.float16)
