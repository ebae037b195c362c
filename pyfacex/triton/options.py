"""How pyfacex's Triton kernels run, decided without importing ``triton`` (``pyfacex.ops`` asks
before it imports the kernels, and triton is optional).

* :func:`fp32_precision`: how the kernels' float32 dot products use the tensor cores.
* :func:`kernel_precision`: the ``precision`` argument the Triton ops get for an input dtype (the
  option above, or the autocast dtype under AMP).
* :func:`unsupported_reason`: which input dtypes a GPU's compute capability cannot run
  (:func:`pyfacex.ops._backend.resolve` asks it: ``auto`` then skips Triton, an explicit
  ``"triton"`` raises).
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

from .._thread_settings import overriding

FP32_PRECISIONS = ("ieee", "tf32x3", "tf32")
# What the ops' ``precision`` argument may be: the float32 modes, or the operand dtype under autocast.
PRECISIONS = (*FP32_PRECISIONS, "bf16", "fp16")
_AUTOCAST_PRECISION = {torch.bfloat16: "bf16", torch.float16: "fp16"}
# tl.dot on these operand dtypes compiles for compute capability 8.0 (sm_80) and newer only.
_NEEDS_SM80 = (torch.bfloat16, torch.float64)
_state = threading.local()  # per thread (pyfacex._thread_settings says why)


@contextlib.contextmanager
def fp32_precision(name: str) -> Iterator[None]:
    """Run the float32 dot products of the Triton kernels called inside the block in mode ``name``.

    Args:
        name: ``"ieee"`` (the default): full float32 products on the CUDA cores; the op tests'
            float32 tolerance (rtol 1e-5) holds.
            ``"tf32x3"``: each operand split into a TF32 high and low part, three tensor-core
            products (hi·hi + hi·lo + lo·hi): about float32 accuracy for three times TF32's
            tensor-core work.
            ``"tf32"``: one tensor-core product of the operands rounded to TF32 (10-bit mantissa,
            relative error up to 2⁻¹¹ per operand), as torch's ``allow_tf32``.

    Accuracy, measured on the margin loss by rounding the kernels' dot operands as the tensor cores
    do (ArcFace, s = 64, B 512, C 10k, d 512, unit embeddings, random class centres; relative to
    float64; gradients as max-norm errors): ``ieee`` loss 3e-11, grad_x and grad_W 7e-8;
    ``tf32x3`` loss 4e-10, gradients 2e-7; ``tf32`` loss 5e-7, gradients 6e-4. (The kernels'
    float32 sums add about 1e-7 to each.) ``tf32`` is torch's default for convolutions
    (``torch.backends.cudnn.allow_tf32``); ``ieee`` is the default here so that tests compare at
    float32 tolerance.

    The inputs of float16, bfloat16 and float64 calls are unaffected (their dots use their own
    dtype), and so are float32 calls under ``torch.autocast``, whose dots use the autocast dtype.
    """
    if name not in FP32_PRECISIONS:
        raise ValueError(f"fp32 precision must be one of {FP32_PRECISIONS}, got {name!r}")
    with overriding(_state, "fp32_precision", name, "ieee"):
        yield


def current_fp32_precision() -> str:
    """The mode set by the innermost :func:`fp32_precision` (``"ieee"`` outside any)."""
    return getattr(_state, "fp32_precision", "ieee")


def kernel_precision(dtype: torch.dtype, device: torch.device) -> str:
    """The ``precision`` argument of a Triton op on ``dtype`` inputs on ``device``.

    float16, bfloat16, float64: ``"ieee"`` (their dots use their own dtype). float32: under
    ``torch.autocast`` on ``device``'s type, the autocast dtype (``"bf16"``/``"fp16"``: operands
    rounded to it in the kernel, float32 accumulation, as an autocast GEMM) where the GPU can run
    it; otherwise :func:`current_fp32_precision`.
    """
    if dtype != torch.float32:
        return "ieee"
    if torch.is_autocast_enabled(device.type):
        amp = torch.get_autocast_dtype(device.type)
        if amp in _AUTOCAST_PRECISION and not unsupported_reason(amp, device):
            return _AUTOCAST_PRECISION[amp]
    return current_fp32_precision()


def check_precision(precision: str, dtype: torch.dtype) -> None:
    """Raise unless ``precision`` is a valid ``precision`` argument for ``dtype`` inputs."""
    allowed = PRECISIONS if dtype == torch.float32 else ("ieee",)
    if precision not in allowed:
        raise ValueError(f"precision must be one of {allowed} for {dtype} inputs, got {precision!r}")


def unsupported_reason(dtype: torch.dtype, device: torch.device | str) -> str:
    """Why the Triton kernels cannot run ``dtype`` inputs on ``device`` ("" when they can).

    bfloat16 and float64 ``tl.dot`` need compute capability 8.0 (sm_80); CPU tensors run under
    the interpreter, which has no such limit.
    """
    device = torch.device(device)
    if device.type != "cuda" or dtype not in _NEEDS_SM80:
        return ""
    major, minor = torch.cuda.get_device_capability(device)
    if major >= 8:
        return ""
    return (f"Triton's tl.dot on {dtype} needs compute capability 8.0 (sm_80) or newer; "
            f"{device} ({torch.cuda.get_device_name(device)}) has {major}.{minor}")
