"""Triton kernels of variable-length ("varlen", like ``cu_seqlens``) softmax attention within segments.

N tokens are packed along dim 0 into S segments by ``offsets`` (S+1,); for every segment [a, b):
out[a:b] = softmax(scale·q[a:b]·k[a:b]ᵀ)·v[a:b]. Tokens never attend across segments; no causal mask.

Flash-attention scheme, memory O(N·d), never N×N:

- a host-side block table lists every BLOCK-row block of every segment as (first row, segment start,
  segment end), so no program straddles two segments and empty segments get no program;
- forward: one program per query block streams the key tiles of its segment with an online softmax
  (running max, running sum, rescaled accumulator) and writes out and the row log-sum-exp ``lse``;
- backward: D = rowsum(dO ⊙ O) on the host, then one kernel per key block that streams the query tiles
  of its segment into dK and dV, and one per query block that streams the key tiles into dQ, both
  recomputing P = exp(scale·q·kᵀ − lse). Each output row block has one owner, so no atomics.

Head dims are padded to powers of two and masked. The score products q·kᵀ and dO·vᵀ loop over
BLOCK_K-wide chunks of the head dims (the loop Triton pipelines, so shared memory does not grow with
them), and the outputs' head dims are cut into BLOCK_DK/BLOCK_DV chunks on a second grid axis (their
accumulators live in registers; each chunk's programs recompute the scores). :func:`plan` chooses
the tiles per dtype, a pure function of the problem that the offline resource test enumerates.

``scale`` reaches the kernels as a one-element tensor of the accumulation dtype: a Python float
argument would arrive as float32 and cost float64 inputs their precision.
"""

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ..ops._checks import reads_values
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

__all__ = ["segment_attention", "plan", "AttentionPlan", "launches"]


# ---------------------------------------------------------------- planner

@dataclass(frozen=True)
class AttentionPlan:
    """Tiles and launch options of the three attention kernels for one problem (see :func:`plan`).

    Attributes:
        block: query and key rows of a tile (BLOCK_M = BLOCK_N).
        block_k: head-dim chunk of the score products q·kᵀ and dO·vᵀ (the pipelined loop).
        block_dk, block_dv: output chunks of dk (dQ, dK) and dv (out, dV), a grid axis.
        num_warps, num_stages: Triton's launch options.
    """

    block: int
    block_k: int
    block_dk: int
    block_dv: int
    num_warps: int
    num_stages: int


# Per operand class (pyfacex.triton._common.operand_class): (row block cap, block_k cap, output chunk
# cap, num_warps, num_stages), from offline compiles for sm_80 and sm_90: the largest tiles without
# register spills at every head dim up to 512, aligned or not (the dK/dV kernel, with two
# accumulators, is the binding one). The resource test checks every configuration.
_TILES = {
    "half": (32, 64, 128, 8, 2),
    "fp32-mma": (32, 32, 128, 8, 2),
    "fp32-x3": (16, 16, 64, 4, 2),
    "fp32-fma": (32, 16, 64, 8, 2),
    "fp64": (32, 16, 64, 8, 2),
}


def plan(dtype: torch.dtype, precision: str, longest: int, dk: int, dv: int, arch: Arch = INTERPRETER
         ) -> AttentionPlan:
    """The tiles and launch options of the attention kernels: a pure function of the problem.

    Args:
        dtype: q, k and v's dtype.
        precision: the ops' ``precision`` argument (:func:`pyfacex.triton.options.kernel_precision`).
        longest: tokens of the longest segment (a row block never spans two segments, so shorter
            segments take smaller blocks).
        dk, dv: head dims of q/k and v.
        arch: the GPU; the tiles fit every target's shared memory, so it does not change them.

    Rules: per operand class (:data:`_TILES`); each size rounded up to a power of two within
    [16, its cap]: block from the longest segment, block_k from max(dk, dv), block_dk/block_dv
    from dk/dv.
    """
    rows, k_cap, out_cap, warps, stages = _TILES[operand_class(dtype, precision)]
    return AttentionPlan(block=fit_block(longest, rows), block_k=fit_block(max(dk, dv), k_cap),
                         block_dk=fit_block(dk, out_cap), block_dv=fit_block(dv, out_cap),
                         num_warps=warps, num_stages=stages)


# ---------------------------------------------------------------- kernels


@triton.jit
def _block(blocks_ptr):
    """(first row, segment start, segment end) of this program's block (a row of the block table)."""
    entry = blocks_ptr + tl.program_id(0) * 3
    return tl.load(entry), tl.load(entry + 1), tl.load(entry + 2)


@triton.jit
def _probabilities(q_ptr, k_ptr, lse_ptr, scale, rows, row_ok, cols, col_ok, DK,
                   stride_qn, stride_qd, stride_kn, stride_kd,
                   ACC: tl.constexpr, OPERAND: tl.constexpr, PRECISION: tl.constexpr, CAST: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """(BLOCK_M, BLOCK_N) P = exp(scale·q·kᵀ − lse) recomputed from the forward's lse, 0 in the padding."""
    s = row_dots(q_ptr, k_ptr, rows, row_ok, cols, col_ok, DK, stride_qn, stride_qd, stride_kn, stride_kd,
                 ACC, OPERAND, PRECISION, CAST, BLOCK_M, BLOCK_N, BLOCK_K) * scale
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
    # Mask before exp: exp(0 − lse) of a padding entry could overflow.
    return tl.exp(tl.where(row_ok[:, None] & col_ok[None, :], s - lse[:, None], float("-inf")))


@triton.jit
def _grad_scores(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, scale, rows, row_ok, cols, col_ok, DK, DV,
                 stride_qn, stride_qd, stride_kn, stride_kd, stride_vn, stride_vd, stride_on, stride_od,
                 ACC: tl.constexpr, OPERAND: tl.constexpr, PRECISION: tl.constexpr, CAST: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """P and dS = P ⊙ (dO·vᵀ − D) of the (BLOCK_M, BLOCK_N) tile (dS without the factor scale)."""
    p = _probabilities(q_ptr, k_ptr, lse_ptr, scale, rows, row_ok, cols, col_ok, DK,
                       stride_qn, stride_qd, stride_kn, stride_kd, ACC, OPERAND, PRECISION, CAST, BLOCK_M, BLOCK_N,
                       BLOCK_K)
    dp = row_dots(do_ptr, v_ptr, rows, row_ok, cols, col_ok, DV, stride_on, stride_od, stride_vn, stride_vd,
                  ACC, OPERAND, PRECISION, CAST, BLOCK_M, BLOCK_N, BLOCK_K)
    delta = tl.load(delta_ptr + rows, mask=row_ok, other=0.0)
    return p, p * (dp - delta[:, None])


@triton.jit
def _forward_kernel(q_ptr, k_ptr, v_ptr, blocks_ptr, scale_ptr, out_ptr, lse_ptr, DK, DV,
                    stride_qn, stride_qd, stride_kn, stride_kd, stride_vn, stride_vd,
                    ACC: tl.constexpr, OPERAND: tl.constexpr, PRECISION: tl.constexpr, CAST: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_DV: tl.constexpr):
    """Grid (query blocks, dv chunks): out rows of the block for one chunk of dv; chunk 0 also writes lse."""
    start, seg_start, seg_end = _block(blocks_ptr)
    rows = start + tl.arange(0, BLOCK_M)
    row_ok = rows < seg_end
    dv = tl.program_id(1) * BLOCK_DV + tl.arange(0, BLOCK_DV)
    scale = tl.load(scale_ptr)
    row_max = tl.full([BLOCK_M], float("-inf"), ACC)
    row_sum = tl.zeros([BLOCK_M], ACC)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], ACC)
    for n0 in range(seg_start, seg_end, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < seg_end
        s = row_dots(q_ptr, k_ptr, rows, row_ok, cols, col_ok, DK, stride_qn, stride_qd, stride_kn, stride_kd,
                     ACC, OPERAND, PRECISION, CAST, BLOCK_M, BLOCK_N, BLOCK_K) * scale
        # Only the key padding is masked: padding query rows (q = 0) keep finite scores, so no row is
        # all −inf. Every key tile has a valid column, so new_max is finite (finite inputs) and
        # exp(row_max − new_max) is 0 on the first tile.
        s = tl.where(col_ok[None, :], s, float("-inf"))
        new_max = tl.maximum(row_max, tl.max(s, 1))
        alpha = tl.exp(row_max - new_max)
        p = tl.exp(s - new_max[:, None])
        row_sum = row_sum * alpha + tl.sum(p, 1)
        v = load_rows(v_ptr, cols, col_ok, dv, DV, stride_vn, stride_vd)
        acc = tl.dot(operand(p, OPERAND, CAST), operand(v, OPERAND, CAST), acc * alpha[:, None], out_dtype=ACC,
                     input_precision=PRECISION)
        row_max = new_max
    out = acc / row_sum[:, None]
    tl.store(out_ptr + tile_offsets(rows, dv, DV, 1), out.to(out_ptr.dtype.element_ty),
             mask=row_ok[:, None] & (dv < DV)[None, :])
    tl.store(lse_ptr + rows, row_max + tl.log(row_sum), mask=row_ok & (tl.program_id(1) == 0))


@triton.jit
def _grad_kv_kernel(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, blocks_ptr, scale_ptr, grad_k_ptr, grad_v_ptr,
                    DK, DV, stride_qn, stride_qd, stride_kn, stride_kd, stride_vn, stride_vd, stride_on, stride_od,
                    ACC: tl.constexpr, OPERAND: tl.constexpr, PRECISION: tl.constexpr, CAST: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                    BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr):
    """Grid (key blocks, max(dk chunks, dv chunks)): chunk c of dK = scale·dSᵀ·Q and of dV = Pᵀ·dO
    over the query tiles of the block's segment (a chunk past dk or dv is fully masked)."""
    start, seg_start, seg_end = _block(blocks_ptr)
    cols = start + tl.arange(0, BLOCK_N)
    col_ok = cols < seg_end
    dk = tl.program_id(1) * BLOCK_DK + tl.arange(0, BLOCK_DK)
    dv = tl.program_id(1) * BLOCK_DV + tl.arange(0, BLOCK_DV)
    scale = tl.load(scale_ptr)
    grad_k = tl.zeros([BLOCK_N, BLOCK_DK], ACC)
    grad_v = tl.zeros([BLOCK_N, BLOCK_DV], ACC)
    for m0 in range(seg_start, seg_end, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        row_ok = rows < seg_end
        p, ds = _grad_scores(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, scale, rows, row_ok, cols, col_ok,
                             DK, DV, stride_qn, stride_qd, stride_kn, stride_kd, stride_vn, stride_vd,
                             stride_on, stride_od, ACC, OPERAND, PRECISION, CAST, BLOCK_M, BLOCK_N, BLOCK_K)
        do = load_rows(do_ptr, rows, row_ok, dv, DV, stride_on, stride_od)
        grad_v = tl.dot(tl.trans(operand(p, OPERAND, CAST)), operand(do, OPERAND, CAST), grad_v,
                        out_dtype=ACC, input_precision=PRECISION)
        q = load_rows(q_ptr, rows, row_ok, dk, DK, stride_qn, stride_qd)
        grad_k = tl.dot(tl.trans(operand(ds, OPERAND, CAST)), operand(q, OPERAND, CAST), grad_k,
                        out_dtype=ACC, input_precision=PRECISION)
    grad_k = grad_k * scale
    tl.store(grad_k_ptr + tile_offsets(cols, dk, DK, 1), grad_k.to(grad_k_ptr.dtype.element_ty),
             mask=col_ok[:, None] & (dk < DK)[None, :])
    tl.store(grad_v_ptr + tile_offsets(cols, dv, DV, 1), grad_v.to(grad_v_ptr.dtype.element_ty),
             mask=col_ok[:, None] & (dv < DV)[None, :])


@triton.jit
def _grad_q_kernel(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, blocks_ptr, scale_ptr, grad_q_ptr,
                   DK, DV, stride_qn, stride_qd, stride_kn, stride_kd, stride_vn, stride_vd, stride_on, stride_od,
                   ACC: tl.constexpr, OPERAND: tl.constexpr, PRECISION: tl.constexpr, CAST: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_DK: tl.constexpr):
    """Grid (query blocks, dk chunks): chunk c of dQ = scale·dS·K over the key tiles of the block's segment."""
    start, seg_start, seg_end = _block(blocks_ptr)
    rows = start + tl.arange(0, BLOCK_M)
    row_ok = rows < seg_end
    dk = tl.program_id(1) * BLOCK_DK + tl.arange(0, BLOCK_DK)
    scale = tl.load(scale_ptr)
    grad_q = tl.zeros([BLOCK_M, BLOCK_DK], ACC)
    for n0 in range(seg_start, seg_end, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < seg_end
        _, ds = _grad_scores(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, scale, rows, row_ok, cols, col_ok,
                             DK, DV, stride_qn, stride_qd, stride_kn, stride_kd, stride_vn, stride_vd,
                             stride_on, stride_od, ACC, OPERAND, PRECISION, CAST, BLOCK_M, BLOCK_N, BLOCK_K)
        k = load_rows(k_ptr, cols, col_ok, dk, DK, stride_kn, stride_kd)
        grad_q = tl.dot(operand(ds, OPERAND, CAST), operand(k, OPERAND, CAST), grad_q, out_dtype=ACC,
                        input_precision=PRECISION)
    grad_q = grad_q * scale
    tl.store(grad_q_ptr + tile_offsets(rows, dk, DK, 1), grad_q.to(grad_q_ptr.dtype.element_ty),
             mask=row_ok[:, None] & (dk < DK)[None, :])


# ---------------------------------------------------------------- launches

def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offsets: torch.Tensor) -> None:
    """The shape agreements the kernels' indexing relies on (pyfacex.ops checks the rest, with names)."""
    if q.dim() != 2 or k.dim() != 2 or v.dim() != 2:
        raise ValueError(f"q, k, v must be 2-D, got shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if not (q.shape[0] == k.shape[0] == v.shape[0]) or q.shape[1] != k.shape[1]:
        raise ValueError(f"q (N, dk), k (N, dk), v (N, dv) disagree: "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if offsets.dtype != torch.int64 or offsets.dim() != 1 or offsets.numel() == 0:
        raise ValueError(f"offsets must be a 1-D int64 tensor of S+1 >= 1 entries, "
                         f"got {offsets.dtype} {tuple(offsets.shape)}")


def _block_table(q: torch.Tensor, v: torch.Tensor, offsets: torch.Tensor, precision: str
                 ) -> tuple[torch.Tensor, AttentionPlan, torch.Tensor | None]:
    """The block table and the plan shared by the forward and the backward (N > 0).

    Returns:
        blocks: (num_blocks, 3) int64, one row (first row, segment start, segment end) per
            plan.block-row block of every segment, segment by segment.
        plan: :func:`plan` for the longest segment on q's device.
        invalid: None when the offsets were checked on the host (bad ones raise); where values must
            not be read (:func:`pyfacex.ops.sync_free`, CUDA-graph capture), a 0-d bool tensor that
            is True for invalid offsets, whose outputs the caller fills with NaN.
    """
    if not reads_values(offsets):
        return _block_table_on_device(q, v, offsets, precision)
    n, dk, dv = q.shape[0], q.shape[1], v.shape[1]
    lengths = offsets.diff()
    # One host sync: the block size depends on the longest segment, and bad offsets must not reach
    # the kernels as out-of-bounds rows.
    first, last, shortest, longest = torch.stack(
        [offsets[0], offsets[-1], lengths.min(), lengths.max()]).tolist() if lengths.numel() else (0, 0, 0, 0)
    if first != 0 or last != n or shortest < 0:
        raise ValueError(f"offsets must be non-decreasing from 0 to N = {n}, got offsets[0] = {first}, "
                         f"offsets[-1] = {last}, smallest step {shortest}")
    p = plan(q.dtype, precision, longest, dk, dv, device_arch(q.device))
    counts = (lengths + p.block - 1) // p.block
    total = int(counts.sum())
    segment = torch.repeat_interleave(counts, output_size=total)
    first_block = counts.cumsum(0) - counts
    index = torch.arange(total, device=offsets.device) - first_block[segment]
    seg_start, seg_end = offsets[segment], offsets[segment + 1]
    return torch.stack([seg_start + index * p.block, seg_start, seg_end], 1).contiguous(), p, None


def _block_table_on_device(q: torch.Tensor, v: torch.Tensor, offsets: torch.Tensor, precision: str
                           ) -> tuple[torch.Tensor, AttentionPlan, torch.Tensor]:
    """:func:`_block_table` without reading ``offsets`` on the host: the plan for a segment of all N
    tokens (the largest block), and a table of the most blocks S segments can need (S + N // block),
    the unused rows (0, 0, 0), which the kernels skip. Segments are clamped into [0, N], so invalid
    offsets never make a kernel read out of bounds; ``invalid`` flags them."""
    n, dk, dv = q.shape[0], q.shape[1], v.shape[1]
    p = plan(q.dtype, precision, n, dk, dv, device_arch(q.device))
    segments = offsets.shape[0] - 1
    starts = offsets[:-1].clamp(0, n)
    ends = torch.maximum(offsets[1:].clamp(0, n), starts)
    counts = (ends - starts + p.block - 1) // p.block
    ends_of_blocks = counts.cumsum(0)
    row = torch.arange(segments + n // p.block, device=offsets.device)
    segment = torch.searchsorted(ends_of_blocks, row, right=True)
    used = segment < segments
    segment = segment.clamp(max=max(segments - 1, 0))
    if segments == 0:  # no segment: every row unused
        blocks = torch.zeros((row.shape[0], 3), dtype=torch.int64, device=offsets.device)
    else:
        first = starts[segment] + (row - (ends_of_blocks[segment] - counts[segment])) * p.block
        blocks = torch.where(used[:, None], torch.stack([first, starts[segment], ends[segment]], 1), 0).contiguous()
    lengths = offsets.diff()
    invalid = (offsets[0] != 0) | (offsets[-1] != n) | (lengths < 0).any()
    return blocks, p, invalid
def _strides(**tensors: torch.Tensor) -> dict:
    """stride_<name>n, stride_<name>d of each (rows, dims) tensor (non-contiguous inputs are fine)."""
    return {f"stride_{name}{axis}": t.stride(i) for name, t in tensors.items() for i, axis in enumerate("nd")}


def _chunks(d: int, block_d: int) -> int:
    return max(1, triton.cdiv(d, block_d))  # at least one: chunk 0 writes lse even when dv = 0


def _tile_args(p: AttentionPlan, q: torch.Tensor, v: torch.Tensor, precision: str) -> dict:
    return dict(DK=q.shape[1], DV=v.shape[1], **dtype_args(q.dtype, precision), BLOCK_M=p.block, BLOCK_N=p.block,
                BLOCK_K=p.block_k)


def _forward_launch(p: AttentionPlan, precision: str, q, k, v, blocks, scale, out, lse) -> Launch:
    return Launch("attention_forward", _forward_kernel, (blocks.shape[0], _chunks(v.shape[1], p.block_dv)),
                  (q, k, v, blocks, scale, out, lse),
                  dict(_strides(q=q, k=k, v=v), **_tile_args(p, q, v, precision), BLOCK_DV=p.block_dv),
                  p.num_warps, p.num_stages)


def _backward_launches(p: AttentionPlan, precision: str, tensors, grad_q, grad_k, grad_v) -> list[Launch]:
    """The dK/dV and dQ launches; tensors = (q, k, v, grad_out, lse, delta, blocks, scale)."""
    q, k, v, grad_out, _, _, blocks, _ = tensors
    args = dict(_strides(q=q, k=k, v=v, o=grad_out), **_tile_args(p, q, v, precision))
    dk_chunks = _chunks(q.shape[1], p.block_dk)
    kv_chunks = max(dk_chunks, _chunks(v.shape[1], p.block_dv))
    return [
        Launch("attention_grad_kv", _grad_kv_kernel, (blocks.shape[0], kv_chunks), (*tensors, grad_k, grad_v),
               dict(args, BLOCK_DK=p.block_dk, BLOCK_DV=p.block_dv), p.num_warps, p.num_stages),
        Launch("attention_grad_q", _grad_q_kernel, (blocks.shape[0], dk_chunks), (*tensors, grad_q),
               dict(args, BLOCK_DK=p.block_dk), p.num_warps, p.num_stages),
    ]


def launches(dtype: torch.dtype, precision: str, longest: int, dk: int, dv: int, arch: Arch) -> list[Launch]:
    """The three kernel launches of one segment of ``longest`` tokens on meta tensors (for offline
    compiles; not runnable)."""
    p = plan(dtype, precision, longest, dk, dv, arch)
    acc = acc_dtype(dtype)
    meta = dict(device="meta")
    q, k = torch.empty(longest, dk, dtype=dtype, **meta), torch.empty(longest, dk, dtype=dtype, **meta)
    v = torch.empty(longest, dv, dtype=dtype, **meta)
    rows, blocks = torch.empty(longest, dtype=acc, **meta), torch.empty(1, 3, dtype=torch.int64, **meta)
    scale = torch.empty(1, dtype=acc, **meta)
    tensors = (q, k, v, torch.empty_like(v), rows, rows, blocks, scale)
    return [_forward_launch(p, precision, q, k, v, blocks, scale, torch.empty_like(v), rows),
            *_backward_launches(p, precision, tensors, torch.empty_like(q), torch.empty_like(k), torch.empty_like(v))]


# ---------------------------------------------------------------- ops

@torch.library.custom_op("pyfacex::triton_segment_attention", mutates_args=())
def _segment_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offsets: torch.Tensor,
                       scale: float, precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention within each segment [offsets[i], offsets[i+1]) of the packed tokens.

    Args:
        q: (N, dk) queries; k: (N, dk) keys; v: (N, dv) values; one float dtype, any strides.
        offsets: (S+1,) int64 segment boundaries, offsets[0] = 0, offsets[-1] = N, non-decreasing
            (empty segments allowed).
        scale: the factor of the scores q·kᵀ.
        precision: how the dots treat the operands (:func:`pyfacex.triton.options.kernel_precision`).

    Returns:
        out (N, dv) in v's dtype: softmax(scale·q·kᵀ)·v per segment; lse (N,) float32 (float64 for
        float64 inputs): the row log-sum-exp of scale·q·kᵀ within the segment.
    """
    _check_inputs(q, k, v, offsets)
    n, dv = q.shape[0], v.shape[1]
    acc = acc_dtype(q.dtype)
    # The kernel writes every row: each token lies in a non-empty segment, each segment in blocks.
    out = torch.empty((n, dv), dtype=v.dtype, device=v.device)
    lse = torch.empty(n, dtype=acc, device=q.device)
    if n == 0:
        return out, lse
    blocks, p, invalid = _block_table(q, v, offsets, precision)
    scale_t = torch.full((1,), scale, dtype=acc, device=q.device)
    with device_guard(q):
        _forward_launch(p, precision, q, k, v, blocks, scale_t, out, lse)()
    if invalid is not None:  # no host check ran: invalid offsets give NaN, not rows never written
        out.masked_fill_(invalid, float("nan"))
        lse.masked_fill_(invalid, float("nan"))
    return out, lse


@_segment_attention.register_fake
def _(q, k, v, offsets, scale, precision):
    return v.new_empty((q.shape[0], v.shape[1])), q.new_empty(q.shape[0], dtype=acc_dtype(q.dtype))


@torch.library.custom_op("pyfacex::triton_segment_attention_backward", mutates_args=())
def _segment_attention_backward(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                offsets: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
                                scale: float, precision: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of q, k, v from that of out (flash-attention backward, P recomputed from lse).

    Args:
        grad_out: (N, dv) gradient of out.
        q, k, v, offsets, scale, precision: as given to the forward.
        out: (N, dv), lse: (N,) as the forward returned them.

    Returns:
        grad_q (N, dk), grad_k (N, dk), grad_v (N, dv) in the inputs' dtype.
    """
    _check_inputs(q, k, v, offsets)
    n, dk, dv = q.shape[0], q.shape[1], v.shape[1]
    # The kernels write every row (as in the forward).
    grad_q = torch.empty((n, dk), dtype=q.dtype, device=q.device)
    grad_k = torch.empty((n, dk), dtype=k.dtype, device=k.device)
    grad_v = torch.empty((n, dv), dtype=v.dtype, device=v.device)
    if n == 0:
        return grad_q, grad_k, grad_v
    acc = acc_dtype(q.dtype)
    grad_out = grad_out.to(v.dtype)  # one operand dtype in the kernels' dots
    delta = (grad_out.to(acc) * out.to(acc)).sum(1)  # D_i = dO_i·O_i
    blocks, p, invalid = _block_table(q, v, offsets, precision)
    tensors = (q, k, v, grad_out, lse.contiguous(), delta, blocks, torch.full((1,), scale, dtype=acc, device=q.device))
    with device_guard(q):
        for launch in _backward_launches(p, precision, tensors, grad_q, grad_k, grad_v):
            launch()
    if invalid is not None:
        for grad in (grad_q, grad_k, grad_v):
            grad.masked_fill_(invalid, float("nan"))
    return grad_q, grad_k, grad_v


@_segment_attention_backward.register_fake
def _(grad_out, q, k, v, offsets, out, lse, scale, precision):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output):
    q, k, v, offsets, scale, precision = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, offsets, out, lse)
    ctx.scale, ctx.precision = scale, precision
    ctx.mark_non_differentiable(lse)


def _backward(ctx, grad_out, grad_lse):
    q, k, v, offsets, out, lse = ctx.saved_tensors
    grad_q, grad_k, grad_v = torch.ops.pyfacex.triton_segment_attention_backward(
        grad_out, q, k, v, offsets, out, lse, ctx.scale, ctx.precision)
    return grad_q, grad_k, grad_v, None, None, None


# Once, at import: callers run inside torch.compile'd code, which must not see a registration.
torch.library.register_autograd("pyfacex::triton_segment_attention", _backward, setup_context=_setup_context)


def segment_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offsets: torch.Tensor,
                      scale: float) -> torch.Tensor:
    """Softmax attention within segments (Triton; differentiable in q, k, v).

    Args:
        q: (N, dk), k: (N, dk), v: (N, dv), one float dtype, any strides.
        offsets: (S+1,) int64, offsets[0] = 0, offsets[-1] = N, non-decreasing; token i attends to the
            tokens of its own segment [offsets[s], offsets[s+1]) only.
        scale: the factor of the scores q·kᵀ (commonly dk**-0.5).

    Returns:
        (N, dv) in v's dtype: out[a:b] = softmax(scale·q[a:b]·k[a:b]ᵀ, dim=-1)·v[a:b] for every segment.
        float32 inputs' dots follow :func:`pyfacex.triton.options.fp32_precision` (or the autocast dtype).
    """
    return torch.ops.pyfacex.triton_segment_attention(q, k, v, offsets, float(scale),
                                                      kernel_precision(q.dtype, q.device))[0]
