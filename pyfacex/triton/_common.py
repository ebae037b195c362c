"""Helpers shared by the Triton kernels: interpreter detection, the GPU targets the planners size
tiles for, dtype and precision constexprs, and jit building blocks."""
import contextlib
import os
from dataclasses import dataclass, field

import torch
import triton
import triton.language as tl

from .options import check_precision

# Triton picks the interpreter when a kernel is decorated, so read the variable once, at import.
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
MIN_BLOCK = 16  # tl.dot needs every dimension >= 16
# Told nothing, ptxas fits small kernels into 64-128 registers for occupancy and spills a few bytes
# to get there (seen on sm_80 and sm_90 for tiles of 16-32 rows at 8 warps); with one program per
# SM as its floor it keeps them in registers.
PTXAS_OPTIONS = "--minnctapersm 1"


@dataclass(frozen=True)
class Arch:
    """What the planners need to know about a GPU.

    Attributes:
        name: ``"sm_XY"`` (or ``"interpreter"``).
        shared_memory: bytes of shared memory one program (block) may use (the opt-in maximum).
        sm_count: streaming multiprocessors: how many programs run at once, for split counts.
    """

    name: str
    shared_memory: int
    sm_count: int


SM80 = Arch("sm_80", 166_912, 108)  # A100
SM90 = Arch("sm_90", 232_448, 132)  # H100, H200
# The targets every planner configuration is compiled for by the offline resource test.
TARGETS = (SM80, SM90)
# CPU tensors under TRITON_INTERPRET=1 (about 0.5 ms per program instance): two "SMs" keep the
# grids small, and still give the class splits of the margin kernels more than one range.
INTERPRETER = Arch("interpreter", SM80.shared_memory, 2)


def device_arch(device: torch.device) -> Arch:
    """The :class:`Arch` of ``device`` (:data:`INTERPRETER` for CPU tensors)."""
    if device.type != "cuda":
        return INTERPRETER
    props = torch.cuda.get_device_properties(device)
    shared = getattr(props, "shared_memory_per_block_optin", props.shared_memory_per_block)
    return Arch(f"sm_{props.major}{props.minor}", shared, props.multi_processor_count)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulation dtype of kernels on ``dtype`` inputs: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


_TL_DTYPES = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16,
              torch.float64: tl.float64, "bf16": tl.bfloat16, "fp16": tl.float16}


def dtype_args(dtype: torch.dtype, precision: str) -> dict:
    """The dtype constexprs of every kernel on ``dtype`` inputs with the ops' ``precision`` argument
    (:func:`pyfacex.triton.options.kernel_precision`).

    Returns:
        ACC: the accumulation dtype; OPERAND: the dtype tl.dot operands are rounded to (the inputs',
        or the autocast dtype for ``"bf16"``/``"fp16"``); PRECISION: tl.dot's ``input_precision``
        (``"ieee"``, ``"tf32x3"`` or ``"tf32"``; only float32 operands read it); CAST: widen
        half-precision operands to float32 after rounding (the interpreter's bf16 tl.dot is wrong).
    """
    check_precision(precision, dtype)
    operand = _TL_DTYPES[precision] if precision in ("bf16", "fp16") else _TL_DTYPES[dtype]
    return dict(ACC=tl.float64 if dtype == torch.float64 else tl.float32, OPERAND=operand,
                PRECISION=precision if dtype == torch.float32 and operand == tl.float32 else "ieee",
                CAST=INTERPRET and operand in (tl.float16, tl.bfloat16))


@dataclass
class Launch:
    """One kernel launch: ``kernel[grid](*args, **kwargs, **options)``.

    The ops build it from their tensors and run it; :mod:`pyfacex.triton.resources` builds it with
    the same function from meta tensors and compiles it offline, so the offline compile sees the
    signature, constexprs and launch options that the GPU does.
    """

    name: str
    kernel: object
    grid: tuple
    args: tuple
    kwargs: dict = field(default_factory=dict)
    num_warps: int = 4
    num_stages: int = 2

    @property
    def options(self) -> dict:
        """Triton's compile options of the launch (the interpreter ignores them)."""
        return dict(num_warps=self.num_warps, num_stages=self.num_stages, ptx_options=PTXAS_OPTIONS)

    def __call__(self) -> None:
        self.kernel[self.grid](*self.args, **self.kwargs, **self.options)


def operand_class(dtype: torch.dtype, precision: str) -> str:
    """What sizes a kernel's tiles: ``"half"`` (2-byte inputs, tensor cores), ``"fp32-mma"`` (float32
    loads into one tensor-core dot per product: tf32, or autocast operands), ``"fp32-x3"`` (tf32x3:
    three dots and the operands' split halves), ``"fp32-fma"`` (float32 ``ieee``: dots on the CUDA
    cores, whose operands sit in registers), ``"fp64"``."""
    if dtype.itemsize == 2:
        return "half"
    if dtype == torch.float64:
        return "fp64"
    return {"ieee": "fp32-fma", "tf32x3": "fp32-x3"}.get(precision, "fp32-mma")


def device_guard(t: torch.Tensor):
    """Triton launches on the current CUDA device, not the tensors' one: make it t's."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


@triton.jit
def operand(t, dtype: tl.constexpr, CAST: tl.constexpr):
    """``t`` as a tl.dot operand: rounded to ``dtype`` (what the tensor cores take, with float32
    accumulation).

    Under the interpreter (CAST) the rounded values stay float32, because its tl.dot on bf16 is
    wrong, and the bf16 rounding is done here with integer arithmetic, because its float32 → bf16
    conversion truncates where the GPU rounds to nearest even: interpreter tests see the GPU's numerics.
    """
    if CAST:
        t = t.to(tl.float32)
        if dtype == tl.bfloat16:
            bits = t.to(tl.uint32, bitcast=True)
            t = (((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16).to(tl.float32, bitcast=True)
        else:
            t = t.to(dtype).to(tl.float32)
    else:
        t = t.to(dtype)
    return t


@triton.jit
def tile_offsets(rows, dims, stride_r, stride_d):
    """(rows, dims) element offsets of a strided 2-D tensor, in int64: rows·stride_r passes 2³¹
    once rows·d does (4.2M classes at d 512), and int32 arithmetic would wrap there."""
    return rows.to(tl.int64)[:, None] * stride_r + dims.to(tl.int64)[None, :] * stride_d


@triton.jit
def load_rows(ptr, rows, row_ok, dims, D, stride_r, stride_d):
    """The (rows, dims) tile of a strided 2-D tensor, 0 outside the valid rows and the first D dims."""
    return tl.load(ptr + tile_offsets(rows, dims, stride_r, stride_d), mask=row_ok[:, None] & (dims < D)[None, :],
                   other=0.0)


@triton.jit
def row_dots(a_ptr, b_ptr, a_rows, a_ok, b_rows, b_ok, D, stride_an, stride_ad, stride_bn, stride_bd,
             ACC: tl.constexpr, OPERAND: tl.constexpr, PRECISION: tl.constexpr, CAST: tl.constexpr,
             BLOCK_A: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr):
    """(BLOCK_A, BLOCK_B) a·bᵀ of two row tiles of D-wide rows, over BLOCK_K-wide chunks of D (the
    loop Triton pipelines: its shared memory is the chunks' stages, whatever D); padding rows give 0."""
    acc = tl.zeros([BLOCK_A, BLOCK_B], ACC)
    for k0 in range(0, D, BLOCK_K):
        dims = k0 + tl.arange(0, BLOCK_K)
        a = load_rows(a_ptr, a_rows, a_ok, dims, D, stride_an, stride_ad)
        b = load_rows(b_ptr, b_rows, b_ok, dims, D, stride_bn, stride_bd)
        acc = tl.dot(operand(a, OPERAND, CAST), tl.trans(operand(b, OPERAND, CAST)), acc, out_dtype=ACC,
                     input_precision=PRECISION)
    return acc


def fit_block(n: int, cap: int) -> int:
    """n rounded up to a power of two, within [MIN_BLOCK, cap]."""
    return max(MIN_BLOCK, min(cap, triton.next_power_of_2(max(n, 1))))
