"""Helpers shared by the Triton kernels: interpreter detection, tile limits and jit building blocks."""
import os

import triton
import triton.language as tl

# Triton picks the interpreter when a kernel is decorated, so read the variable once, at import.
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
TILE_ELEMENTS = 16384  # cap of one register tile (rows × feature chunk)
MIN_BLOCK = 16  # tl.dot needs every dimension >= 16
MAX_BLOCK = 64  # larger row blocks cost registers and gain little reuse


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
