"""Helpers shared by the Triton kernels: interpreter detection, tile limits, launch arguments and jit
building blocks."""
import contextlib
import os

import torch
import triton
import triton.language as tl

# Triton picks the interpreter when a kernel is decorated, so read the variable once, at import.
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
TILE_ELEMENTS = 16384  # cap of one register tile (rows × feature chunk)
MIN_BLOCK = 16  # tl.dot needs every dimension >= 16
MAX_BLOCK = 64  # larger row blocks cost registers and gain little reuse


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulation dtype of kernels on ``dtype`` inputs: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def dtype_args(dtype: torch.dtype) -> dict:
    """The ACC (accumulation) and CAST (widen tl.dot operands under the interpreter) constexprs."""
    return dict(ACC=tl.float64 if dtype == torch.float64 else tl.float32,
                CAST=INTERPRET and dtype in (torch.float16, torch.bfloat16))


def device_guard(t: torch.Tensor):
    """Triton launches on the current CUDA device, not the tensors' one: make it t's."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


@triton.jit
def operand(t, dtype: tl.constexpr, CAST: tl.constexpr):
    """``t`` as a tl.dot operand: rounded to the inputs' dtype (what the tensor cores take, with
    float32 accumulation), then widened to float32 under the interpreter, whose tl.dot on bf16 is
    wrong: the rounding stays the GPU's, so interpreter tests see the GPU's numerics."""
    t = t.to(dtype)
    if CAST:
        t = t.to(tl.float32)
    return t


@triton.jit
def load_rows(ptr, rows, row_ok, dims, D, stride_r, stride_d):
    """The (rows, dims) tile of a strided 2-D tensor, 0 outside the valid rows and the first D dims."""
    return tl.load(ptr + rows[:, None] * stride_r + dims[None, :] * stride_d,
                   mask=row_ok[:, None] & (dims < D)[None, :], other=0.0)
