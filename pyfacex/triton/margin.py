"""Triton kernels of the streaming cosine log-sum-exp (``cosine_lse``, see :mod:`pyfacex.ops.margin`).

z_ij = s·xn_i·W_j·inv_j with inv_j = 1/max(‖W_j‖, 1e-12), the target column j = labels[i] replaced
by target_logit[i] (whose derivative with respect to its cosine is target_slope[i]). No kernel
materialises B×C; every z tile is a GEMM tile, (BLOCK_B, BLOCK_C) over BLOCK_K-wide chunks of d,
on the tensor cores for half-precision operands and for float32 under ``tf32``/``tf32x3``.

- Forward, grid (row blocks, class splits): each program streams the class tiles of one class range
  with an online max / sum-exp and writes its partial (max, sum-exp, non-target sum) for its rows;
  the host merges the splits as :func:`pyfacex.ops.margin.loss_from_partials` merges shards.
- grad_xn, grid (row blocks, feature chunks, class splits): Σ_j dz_ij·s·inv_j·W_j over one class
  range into a partial per split (the accumulation dtype); the host sums the splits in a second
  pass (fixed order, no atomics: bitwise deterministic).
- grad_weight, grid (class tiles, feature chunks): each program owns its (BLOCK_C, BLOCK_DO) block
  of the gradient and streams every row block.

The gradients' feature chunks (BLOCK_DO) are a grid axis because their accumulators live in
registers: each chunk's programs recompute their z tiles, d/BLOCK_DO times the z work in all.

Class splits make the grid fill the GPU (B 512 is 16 row blocks of 32, against 108-132 SMs) and
bound each program's class range; their count depends only on the shapes and the GPU
(:func:`plan`), so a run is reproducible bit for bit.

The scale s enters the kernels folded into the column scales s·inv_j (a (C,) tensor of the
statistics dtype): a Python float argument would reach Triton as float32 and cost float64 inputs
their precision. Inter-class filtering enters as LIMIT = s·filter_threshold (a float32 scalar: only
which side of it a logit falls changes, and only within float32's rounding of it); non-target
logits above it are 0, a constant. Offsets are int64 (:func:`pyfacex.triton._common.tile_offsets`).
"""
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import triton
import triton.language as tl

from ._common import (
    INTERPRETER,
    Arch,
    Launch,
    acc_dtype,
    device_arch,
    device_guard,
    dtype_args,
    fit_block,
    load_rows,
    operand,
    operand_class,
    row_dots,
    tile_offsets,
)
from .options import kernel_precision

__all__ = ["ops", "plan", "MarginPlan", "launches"]

_NORM_EPS = 1e-12  # as F.normalize and the reference


# ---------------------------------------------------------------- planner

@dataclass(frozen=True)
class MarginPlan:
    """Tiles and launch options of the three margin kernels for one problem (see :func:`plan`).

    Attributes:
        block_b, block_c: rows and classes of a z tile.
        block_k: feature chunk of the z = xn·Wᵀ products (the pipelined loop).
        block_do: feature chunk of the gradients (a grid axis).
        classes_per_split: classes of one split of the forward and grad_xn grids (a multiple of
            block_c); splits = ⌈C / classes_per_split⌉.
        num_warps, num_stages: Triton's launch options.
    """

    block_b: int
    block_c: int
    block_k: int
    block_do: int
    classes_per_split: int
    num_warps: int
    num_stages: int

    def splits(self, c: int) -> int:
        return triton.cdiv(c, self.classes_per_split)


# Per operand class (pyfacex.triton._common.operand_class): (block_b = block_c, block_k cap,
# block_do cap, num_warps, num_stages), from offline compiles for sm_80 and sm_90: the widest
# gradient chunks that fit without register spills (each chunk recomputes the z tiles; d 512 is one
# chunk on the tensor cores), and 128-byte rows in the pipelined loads (64 for float32 on the CUDA
# cores, whose dot operands sit in registers). The resource test checks every configuration.
_TILES = {
    "half": (32, 64, 512, 8, 3),
    "fp32-mma": (32, 32, 512, 8, 2),
    "fp32-x3": (32, 32, 256, 8, 2),
    "fp32-fma": (32, 16, 128, 8, 2),
    "fp64": (32, 16, 128, 8, 2),
}
_WAVES = 4  # programs per SM the split count aims for (latency hiding and tail)
_PARTIAL_BYTES = 64 << 20  # bound of grad_xn's per-split partials


def plan(dtype: torch.dtype, precision: str, b: int, c: int, d: int, arch: Arch = INTERPRETER) -> MarginPlan:
    """The tiles and launch options of the margin kernels: a pure function of the problem and the GPU.

    Args:
        dtype: the inputs' dtype (xn and weight).
        precision: the ops' ``precision`` argument (:func:`pyfacex.triton.options.kernel_precision`).
        b, c, d: rows, classes and feature dimension.
        arch: the GPU (:func:`pyfacex.triton._common.device_arch`); only its SM count matters
            (the split count): the tiles fit every target's shared memory.

    Rules: tiles and warps per operand class (:data:`_TILES`); block_k and block_do are d rounded
    up to a power of two, within [16, cap]; the class splits give about _WAVES × SMs programs to
    the forward, at most one split per class tile, and keep grad_xn's float32 partials within
    64 MiB.
    """
    rows, k_cap, do_cap, warps, stages = _TILES[operand_class(dtype, precision)]
    block_k, block_do = fit_block(d, k_cap), fit_block(d, do_cap)
    row_blocks, class_tiles = triton.cdiv(max(b, 1), rows), triton.cdiv(max(c, 1), rows)
    partial_bytes = max(b, 1) * max(d, 1) * acc_dtype(dtype).itemsize
    splits = min(triton.cdiv(_WAVES * arch.sm_count, row_blocks), class_tiles, max(1, _PARTIAL_BYTES // partial_bytes))
    return MarginPlan(block_b=rows, block_c=rows, block_k=block_k, block_do=block_do,
                      classes_per_split=triton.cdiv(class_tiles, splits) * rows, num_warps=warps, num_stages=stages)


# ---------------------------------------------------------------- kernels

@triton.jit
def _class_range(split, CLASSES_PER_SPLIT, C):
    start = split * CLASSES_PER_SPLIT
    return start, tl.minimum(start + CLASSES_PER_SPLIT, C)


@triton.jit
def _forward_kernel(xn_ptr, w_ptr, scale_ptr, labels_ptr, target_ptr, max_ptr, sumexp_ptr, nontarget_ptr,
                    B, C, D, CLASSES_PER_SPLIT, LIMIT, stride_xb, stride_xd, stride_wc, stride_wd,
                    ACC: tl.constexpr, OPERAND: tl.constexpr, PRECISION: tl.constexpr, CAST: tl.constexpr,
                    BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr):
    """Grid (row blocks, class splits): the rows' statistics over the split's classes, into row
    ``split`` of the (splits, B) partials."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    split = tl.program_id(1)
    c_start, c_end = _class_range(split, CLASSES_PER_SPLIT, C)
    label = tl.load(labels_ptr + rows, mask=row_ok, other=-1)
    target = tl.load(target_ptr + rows, mask=row_ok, other=0.0)
    row_max = tl.full([BLOCK_B], float("-inf"), ACC)
    sumexp = tl.zeros([BLOCK_B], ACC)
    nontarget = tl.zeros([BLOCK_B], ACC)
    for c0 in range(c_start, c_end, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        col_ok = cols < c_end
        scale = tl.load(scale_ptr + cols, mask=col_ok, other=0.0)
        z = row_dots(xn_ptr, w_ptr, rows, row_ok, cols, col_ok, D, stride_xb, stride_xd, stride_wc, stride_wd,
                     ACC, OPERAND, PRECISION, CAST, BLOCK_B, BLOCK_C, BLOCK_K) * scale[None, :]
        is_target = label[:, None] == cols[None, :]
        z = tl.where(z > LIMIT, 0.0, z)  # inter-class filtering (the target column is replaced below)
        nontarget += tl.sum(tl.where(col_ok[None, :] & ~is_target, z, 0.0), 1)
        z = tl.where(is_target, target[:, None], z)
        z = tl.where(col_ok[None, :], z, float("-inf"))
        # Every tile has a valid column, so (finite inputs) new_max is finite and exp(row_max − new_max)
        # is 0 on the first tile (row_max = −inf), the rescale of the running sum after it.
        new_max = tl.maximum(row_max, tl.max(z, 1))
        sumexp = sumexp * tl.exp(row_max - new_max) + tl.sum(tl.exp(z - new_max[:, None]), 1)
        row_max = new_max
    out = split.to(tl.int64) * B + rows
    tl.store(max_ptr + out, row_max, mask=row_ok)
    tl.store(sumexp_ptr + out, sumexp, mask=row_ok)
    tl.store(nontarget_ptr + out, nontarget, mask=row_ok)


@triton.jit
def _dlogits(z, label, cols, col_ok, row_max, g_sumexp, g_nontarget, target_dz, LIMIT):
    """dz_ij = gS_i·exp(z_ij − max_i) + gN_i of the tile (dcos_ij = s·dz_ij), target_dz_i at the
    target column (computed on the host from the target's own statistics), 0 in the padding and
    where filtered (z_ij > LIMIT).

    The column scale s·inv_j is applied to the other operand (W) or after the sum (H): inv_j has no
    bound (tiny weight rows), and dz·s·inv_j could overflow float16 operands.
    """
    dz = g_sumexp[:, None] * tl.exp(z - row_max[:, None]) + g_nontarget[:, None]
    dz = tl.where(z > LIMIT, 0.0, dz)
    dz = tl.where(label[:, None] == cols[None, :], target_dz[:, None], dz)
    return tl.where(col_ok[None, :], dz, 0.0)


@triton.jit
def _row_terms(labels_ptr, max_ptr, g_sumexp_ptr, g_nontarget_ptr, target_dz_ptr, rows, row_ok):
    """The per-row inputs of _dlogits. Padding rows get gradient 0 and max 0 (not −inf: exp(z − max)
    must stay finite)."""
    label = tl.load(labels_ptr + rows, mask=row_ok, other=-1)
    row_max = tl.load(max_ptr + rows, mask=row_ok, other=0.0)
    g_sumexp = tl.load(g_sumexp_ptr + rows, mask=row_ok, other=0.0)
    g_nontarget = tl.load(g_nontarget_ptr + rows, mask=row_ok, other=0.0)
    target_dz = tl.load(target_dz_ptr + rows, mask=row_ok, other=0.0)
    return label, row_max, g_sumexp, g_nontarget, target_dz


@triton.jit
def _grad_xn_kernel(g_sumexp_ptr, g_nontarget_ptr, target_dz_ptr, xn_ptr, w_ptr, scale_ptr, labels_ptr, max_ptr,
                    partial_ptr, B, C, D, CLASSES_PER_SPLIT, LIMIT, stride_xb, stride_xd, stride_wc, stride_wd,
                    ACC: tl.constexpr, OPERAND: tl.constexpr, PRECISION: tl.constexpr, CAST: tl.constexpr,
                    BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_DO: tl.constexpr):
    """Grid (row blocks, feature chunks, class splits): one feature chunk of Σ_j dz_ij·s·inv_j·W_j over
    the split's classes, into partial[split] ((splits, B, D), the accumulation dtype)."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    dims = tl.program_id(1) * BLOCK_DO + tl.arange(0, BLOCK_DO)
    split = tl.program_id(2)
    c_start, c_end = _class_range(split, CLASSES_PER_SPLIT, C)
    label, row_max, g_sumexp, g_nontarget, target_dz = _row_terms(labels_ptr, max_ptr, g_sumexp_ptr, g_nontarget_ptr,
                                                                  target_dz_ptr, rows, row_ok)
    grad = tl.zeros([BLOCK_B, BLOCK_DO], ACC)
    for c0 in range(c_start, c_end, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        col_ok = cols < c_end
        scale = tl.load(scale_ptr + cols, mask=col_ok, other=0.0)
        z = row_dots(xn_ptr, w_ptr, rows, row_ok, cols, col_ok, D, stride_xb, stride_xd, stride_wc, stride_wd,
                     ACC, OPERAND, PRECISION, CAST, BLOCK_B, BLOCK_C, BLOCK_K) * scale[None, :]
        dz = _dlogits(z, label, cols, col_ok, row_max, g_sumexp, g_nontarget, target_dz, LIMIT)
        # s·W_j/‖W_j‖: entries at most s, safe in float16.
        w = load_rows(w_ptr, cols, col_ok, dims, D, stride_wc, stride_wd)
        w_hat = operand(w.to(ACC) * scale[:, None], OPERAND, CAST)
        grad = tl.dot(operand(dz, OPERAND, CAST), w_hat, grad, out_dtype=ACC, input_precision=PRECISION)
    out = tile_offsets(split.to(tl.int64) * B + rows, dims, D, 1)
    tl.store(partial_ptr + out, grad, mask=row_ok[:, None] & (dims < D)[None, :])


@triton.jit
def _grad_weight_kernel(g_sumexp_ptr, g_nontarget_ptr, target_dz_ptr, xn_ptr, w_ptr, inv_ptr, scale_ptr, labels_ptr,
                        max_ptr, grad_w_ptr, B, C, D, LIMIT, stride_xb, stride_xd, stride_wc, stride_wd,
                        ACC: tl.constexpr, OPERAND: tl.constexpr, PRECISION: tl.constexpr, CAST: tl.constexpr,
                        BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
                        BLOCK_DO: tl.constexpr):
    """Grid (class tiles, feature chunks): one (BLOCK_C, BLOCK_DO) block of grad_weight over every row."""
    cols = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    col_ok = cols < C
    dims = tl.program_id(1) * BLOCK_DO + tl.arange(0, BLOCK_DO)
    scale = tl.load(scale_ptr + cols, mask=col_ok, other=0.0)
    inv = tl.load(inv_ptr + cols, mask=col_ok, other=0.0)
    h = tl.zeros([BLOCK_C, BLOCK_DO], ACC)  # Σ_i dz_ij·xn_i (this chunk)
    wh = tl.zeros([BLOCK_C], ACC)  # Σ_i dz_ij·z_ij = W_j·H_j (see the epilogue)
    for b0 in range(0, B, BLOCK_B):
        rows = b0 + tl.arange(0, BLOCK_B)
        row_ok = rows < B
        label, row_max, g_sumexp, g_nontarget, target_dz = _row_terms(labels_ptr, max_ptr, g_sumexp_ptr,
                                                                      g_nontarget_ptr, target_dz_ptr, rows, row_ok)
        z = row_dots(xn_ptr, w_ptr, rows, row_ok, cols, col_ok, D, stride_xb, stride_xd, stride_wc, stride_wd,
                     ACC, OPERAND, PRECISION, CAST, BLOCK_B, BLOCK_C, BLOCK_K) * scale[None, :]
        dz = _dlogits(z, label, cols, col_ok, row_max, g_sumexp, g_nontarget, target_dz, LIMIT)
        wh += tl.sum(dz * z, 0)
        x = load_rows(xn_ptr, rows, row_ok, dims, D, stride_xb, stride_xd)
        h = tl.dot(tl.trans(operand(dz, OPERAND, CAST)), operand(x, OPERAND, CAST), h, out_dtype=ACC,
                   input_precision=PRECISION)
    # Through the normalisation W/‖W‖: grad_W_j = H_j − inv_j²·(W_j·H_j)·W_j, where
    # H_j = s·inv_j·Σ_i dz_ij·xn_i and W_j·H_j = Σ_i dz_ij·z_ij needs no other feature chunk
    # (z_ij = s·inv_j·(xn_i·W_j) is over all of d).
    w = load_rows(w_ptr, cols, col_ok, dims, D, stride_wc, stride_wd).to(ACC)
    grad = h * scale[:, None] - (inv * inv * wh)[:, None] * w
    tl.store(grad_w_ptr + tile_offsets(cols, dims, D, 1), grad.to(grad_w_ptr.dtype.element_ty),
             mask=col_ok[:, None] & (dims < D)[None, :])


# ---------------------------------------------------------------- launches

def _shape_args(xn: torch.Tensor, weight: torch.Tensor, p: MarginPlan, precision: str, limit: float) -> dict:
    """The shape, stride, dtype, filter and tile arguments every kernel shares (strides: non-contiguous
    inputs are fine)."""
    return dict(B=xn.shape[0], C=weight.shape[0], D=xn.shape[1], LIMIT=limit,
                stride_xb=xn.stride(0), stride_xd=xn.stride(1), stride_wc=weight.stride(0), stride_wd=weight.stride(1),
                **dtype_args(xn.dtype, precision), BLOCK_B=p.block_b, BLOCK_C=p.block_c, BLOCK_K=p.block_k)


def _forward_launch(p: MarginPlan, precision: str, limit: float, xn, weight, scale, labels, target,
                    partials) -> Launch:
    b, c = xn.shape[0], weight.shape[0]
    return Launch("margin_forward", _forward_kernel, (triton.cdiv(b, p.block_b), p.splits(c)),
                  (xn, weight, scale, labels, target, *partials),
                  dict(_shape_args(xn, weight, p, precision, limit), CLASSES_PER_SPLIT=p.classes_per_split),
                  p.num_warps, p.num_stages)


def _grad_xn_launch(p: MarginPlan, precision: str, limit: float, vectors, xn, weight, scale, labels, row_max,
                    partial) -> Launch:
    b, c, d = xn.shape[0], weight.shape[0], xn.shape[1]
    grid = (triton.cdiv(b, p.block_b), triton.cdiv(d, p.block_do), p.splits(c))
    return Launch("margin_grad_xn", _grad_xn_kernel, grid, (*vectors, xn, weight, scale, labels, row_max, partial),
                  dict(_shape_args(xn, weight, p, precision, limit), CLASSES_PER_SPLIT=p.classes_per_split,
                       BLOCK_DO=p.block_do), p.num_warps, p.num_stages)


def _grad_weight_launch(p: MarginPlan, precision: str, limit: float, vectors, xn, weight, inv_norm, scale, labels,
                        row_max, grad_weight) -> Launch:
    c, d = weight.shape
    return Launch("margin_grad_weight", _grad_weight_kernel, (triton.cdiv(c, p.block_c), triton.cdiv(d, p.block_do)),
                  (*vectors, xn, weight, inv_norm, scale, labels, row_max, grad_weight),
                  dict(_shape_args(xn, weight, p, precision, limit), BLOCK_DO=p.block_do), p.num_warps,
                  p.num_stages)


def launches(dtype: torch.dtype, precision: str, b: int, c: int, d: int, arch: Arch,
             limit: float = float("inf")) -> list[Launch]:
    """The three kernel launches of a (B, C, d) problem on meta tensors (for offline compiles; not runnable).
    ``limit``: s·filter_threshold, a runtime scalar (its value does not change the compiled kernels)."""
    p = plan(dtype, precision, b, c, d, arch)
    acc = acc_dtype(dtype)
    meta = dict(device="meta")
    xn, weight = torch.empty(b, d, dtype=dtype, **meta), torch.empty(c, d, dtype=dtype, **meta)
    rows, cols = torch.empty(b, dtype=acc, **meta), torch.empty(c, dtype=acc, **meta)
    labels = torch.empty(b, dtype=torch.int64, **meta)
    partials = [torch.empty(p.splits(c), b, dtype=acc, **meta)] * 3
    vectors = (rows, rows, rows)
    return [
        _forward_launch(p, precision, limit, xn, weight, cols, labels, rows, partials),
        _grad_xn_launch(p, precision, limit, vectors, xn, weight, cols, labels, rows,
                        torch.empty(p.splits(c), b, d, dtype=acc, **meta)),
        _grad_weight_launch(p, precision, limit, vectors, xn, weight, cols, cols, labels, rows,
                            torch.empty_like(weight)),
    ]


# ---------------------------------------------------------------- ops

@torch.library.custom_op("pyfacex::triton_cosine_lse", mutates_args=())
def _cosine_lse(xn: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, target_logit: torch.Tensor,
                target_slope: torch.Tensor, s: float, filter_threshold: float, precision: str
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Online log-sum-exp statistics of z = s·xn·Wᵀ/‖W‖ with the target column replaced by target_logit.

    Args:
        xn: (B, d) embeddings (normally unit rows).
        weight: (C, d) class weights, xn's dtype.
        labels: (B,) int64 in [−1, C); −1: no target column.
        target_logit: (B,) target logits, float32 (float64 for float64 xn).
        target_slope: (B,) their derivatives with respect to the target cosines (used by the backward).
        s: the logit scale.
        filter_threshold: non-target cosines above it count as 0, without gradient (inf: none).
        precision: how the dots treat the operands (:func:`pyfacex.triton.options.kernel_precision`).

    Returns:
        row_max (B,), sumexp (B,), nontarget_sum (B,), target (B,) (target_logit, 0 without a
        target), inv_norm (C,), all float32 (float64 for float64 xn).
    """
    b, c = xn.shape[0], weight.shape[0]
    acc = acc_dtype(xn.dtype)
    # dtype=acc reduces in acc without a float32 copy of weight.
    inv_norm = torch.linalg.vector_norm(weight, dim=1, dtype=acc).clamp_min(_NORM_EPS).reciprocal()
    target = torch.where(labels >= 0, target_logit, 0.0)
    if b == 0 or c == 0:
        empty = [torch.zeros(b, dtype=acc, device=xn.device) for _ in range(2)]
        return torch.full((b,), float("-inf"), dtype=acc, device=xn.device), *empty, target, inv_norm
    p = plan(xn.dtype, precision, b, c, xn.shape[1], device_arch(xn.device))
    # The kernel writes every (split, row) entry: each split has at least one class.
    partials = [torch.empty(p.splits(c), b, dtype=acc, device=xn.device) for _ in range(3)]
    with device_guard(xn):
        _forward_launch(p, precision, s * filter_threshold, xn, weight, s * inv_norm, labels.contiguous(),
                        target_logit.contiguous(), partials)()
    part_max, part_sum, part_nontarget = partials
    row_max = part_max.amax(0)
    sumexp = (part_sum * torch.exp(part_max - row_max)).sum(0)
    return row_max, sumexp, part_nontarget.sum(0), target, inv_norm


@_cosine_lse.register_fake
def _(xn, weight, labels, target_logit, target_slope, s, filter_threshold, precision):
    acc = acc_dtype(xn.dtype)
    rows = [xn.new_empty(xn.shape[0], dtype=acc) for _ in range(4)]
    return (*rows, weight.new_empty(weight.shape[0], dtype=acc))


@torch.library.custom_op("pyfacex::triton_cosine_lse_backward", mutates_args=())
def _cosine_lse_backward(grad_sumexp: torch.Tensor, grad_nontarget_sum: torch.Tensor, grad_target: torch.Tensor,
                         xn: torch.Tensor, weight: torch.Tensor, inv_norm: torch.Tensor, labels: torch.Tensor,
                         target_logit: torch.Tensor, target_slope: torch.Tensor, row_max: torch.Tensor,
                         s: float, filter_threshold: float, precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of xn and weight (through its normalisation) from those of sumexp, nontarget_sum and target.

    Args:
        grad_sumexp, grad_nontarget_sum, grad_target: (B,) statistics dtype.
        xn: (B, d); weight: (C, d); labels: (B,) int64.
        target_logit, target_slope: (B,) as given to the forward.
        inv_norm, row_max: (C,) and (B,) as the forward returned them.
        s, filter_threshold, precision: as given to the forward.

    Returns:
        grad_xn (B, d) in xn's dtype, grad_weight (C, d) in weight's dtype.
    """
    b, c = xn.shape[0], weight.shape[0]
    if b == 0 or c == 0:
        return torch.zeros(xn.shape, dtype=xn.dtype, device=xn.device), torch.zeros(
            weight.shape, dtype=weight.dtype, device=weight.device)
    p = plan(xn.dtype, precision, b, c, xn.shape[1], device_arch(xn.device))
    # The kernels write every element.
    partial = torch.empty((p.splits(c), *xn.shape), dtype=acc_dtype(xn.dtype), device=xn.device)
    grad_weight = torch.empty(weight.shape, dtype=weight.dtype, device=weight.device)
    # The target column: dcos_iy = slope_i·(gS_i·exp(t_i − max_i) + gT_i), in the kernels' unit dz = dcos/s.
    target_dz = (grad_sumexp * torch.exp(target_logit - row_max) + grad_target) * target_slope / s
    vectors = [t.contiguous() for t in (grad_sumexp, grad_nontarget_sum, target_dz)]
    inv_norm, labels, row_max = inv_norm.contiguous(), labels.contiguous(), row_max.contiguous()
    scale = s * inv_norm
    with device_guard(xn):
        limit = s * filter_threshold
        _grad_xn_launch(p, precision, limit, vectors, xn, weight, scale, labels, row_max, partial)()
        _grad_weight_launch(p, precision, limit, vectors, xn, weight, inv_norm, scale, labels, row_max, grad_weight)()
    # The second pass over grad_xn's class splits: a fixed-order sum, so runs agree bit for bit.
    return partial.sum(0).to(xn.dtype), grad_weight


@_cosine_lse_backward.register_fake
def _(grad_sumexp, grad_nontarget_sum, grad_target, xn, weight, inv_norm, labels, target_logit, target_slope, row_max,
      s, filter_threshold, precision):
    return xn.new_empty(xn.shape), weight.new_empty(weight.shape)


def _register_autograd() -> None:
    # pyfacex.ops.margin owns the backward formula shared with the native kernels; it imports this
    # module only on first use, so importing it here makes no cycle.
    from ..ops.margin import _backward_fn

    setup, backward = _backward_fn(torch.ops.pyfacex.triton_cosine_lse_backward)
    torch.library.register_autograd("pyfacex::triton_cosine_lse", backward, setup_context=setup)


def _forward(xn, weight, labels, target_logit, target_slope, s, filter_threshold):
    """``triton_cosine_lse`` with the precision of xn's dtype on its device (the fp32 option or autocast)."""
    return torch.ops.pyfacex.triton_cosine_lse(xn, weight, labels, target_logit, target_slope, s, filter_threshold,
                                               kernel_precision(xn.dtype, xn.device))


# Once, at import: ops() is called on every op call, also inside torch.compile'd code, which must
# not see a registration.
_register_autograd()
_OPS = SimpleNamespace(forward=_forward, backward=torch.ops.pyfacex.triton_cosine_lse_backward)


def ops() -> SimpleNamespace:
    """The Triton pair of ``cosine_lse`` (autograd registered).

    Returns:
        a namespace with ``forward(xn, weight, labels, target_logit, target_slope, s, filter_threshold)`` -> (row_max
        (B,), sumexp (B,), nontarget_sum (B,), target (B,), inv_norm (C,)), which calls
        ``torch.ops.pyfacex.triton_cosine_lse`` with the precision of the inputs (float32: the
        :func:`pyfacex.triton.options.fp32_precision` option, or the autocast dtype), and
        ``backward(g_sumexp, g_nontarget, g_target, xn, weight, inv_norm, labels, target_logit,
        target_slope, row_max, s, filter_threshold, precision)`` -> (grad_xn (B, d), grad_weight (C, d)):
        ``torch.ops.pyfacex.triton_cosine_lse_backward``.
    """
    return _OPS
