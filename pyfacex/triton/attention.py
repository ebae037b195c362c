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

Head dims are padded to powers of two and masked. Above ``_MAX_BLOCK_D`` a head dim is split into
chunks: the score products q·kᵀ and dO·vᵀ loop over the chunks, and the outputs' chunks are a second
grid axis (their programs recompute the scores), so no register tile exceeds ``TILE_ELEMENTS``.

``scale`` reaches the kernels as a one-element tensor of the accumulation dtype: a Python float
argument would arrive as float32 and cost float64 inputs their precision.
"""

import torch
import triton
import triton.language as tl

from ._common import MAX_BLOCK, MIN_BLOCK, TILE_ELEMENTS, acc_dtype, device_guard, dtype_args, load_rows, operand

__all__ = ["segment_attention"]

_MAX_BLOCK_D = TILE_ELEMENTS // MIN_BLOCK  # widest head-dim chunk: a MIN_BLOCK-row tile of it fits the cap


# ---------------------------------------------------------------- kernels

@triton.jit
def _row_dots(a_ptr, b_ptr, a_rows, a_ok, b_rows, b_ok, D, stride_an, stride_ad, stride_bn, stride_bd,
              ACC: tl.constexpr, CAST: tl.constexpr,
              BLOCK_A: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr):
    """(BLOCK_A, BLOCK_B) a·bᵀ of the two row tiles, summed over BLOCK_D-wide chunks of the D columns
    (one chunk unless D > _MAX_BLOCK_D); padding rows give 0."""
    acc = tl.zeros([BLOCK_A, BLOCK_B], ACC)
    for d0 in range(0, D, BLOCK_D):
        dims = d0 + tl.arange(0, BLOCK_D)
        a = load_rows(a_ptr, a_rows, a_ok, dims, D, stride_an, stride_ad)
        b = load_rows(b_ptr, b_rows, b_ok, dims, D, stride_bn, stride_bd)
        # "ieee": float32 inputs must not be rounded to tf32 (the float32 tolerance is 1e-5).
        acc = tl.dot(operand(a, a.dtype, CAST), tl.trans(operand(b, b.dtype, CAST)), acc, out_dtype=ACC,
                     input_precision="ieee")
    return acc


@triton.jit
def _block(blocks_ptr):
    """(first row, segment start, segment end) of this program's block (a row of the block table)."""
    entry = blocks_ptr + tl.program_id(0) * 3
    return tl.load(entry), tl.load(entry + 1), tl.load(entry + 2)


@triton.jit
def _probabilities(q_ptr, k_ptr, lse_ptr, scale, rows, row_ok, cols, col_ok, DK,
                   stride_qn, stride_qd, stride_kn, stride_kd,
                   ACC: tl.constexpr, CAST: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_DK: tl.constexpr):
    """(BLOCK_M, BLOCK_N) P = exp(scale·q·kᵀ − lse) recomputed from the forward's lse, 0 in the padding."""
    s = _row_dots(q_ptr, k_ptr, rows, row_ok, cols, col_ok, DK, stride_qn, stride_qd, stride_kn, stride_kd,
                  ACC, CAST, BLOCK_M, BLOCK_N, BLOCK_DK) * scale
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
    # Mask before exp: exp(0 − lse) of a padding entry could overflow.
    return tl.exp(tl.where(row_ok[:, None] & col_ok[None, :], s - lse[:, None], float("-inf")))


@triton.jit
def _grad_scores(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, scale, rows, row_ok, cols, col_ok, DK, DV,
                 stride_qn, stride_qd, stride_kn, stride_kd, stride_vn, stride_vd, stride_on, stride_od,
                 ACC: tl.constexpr, CAST: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr):
    """P and dS = P ⊙ (dO·vᵀ − D) of the (BLOCK_M, BLOCK_N) tile (dS without the factor scale)."""
    p = _probabilities(q_ptr, k_ptr, lse_ptr, scale, rows, row_ok, cols, col_ok, DK,
                       stride_qn, stride_qd, stride_kn, stride_kd, ACC, CAST, BLOCK_M, BLOCK_N, BLOCK_DK)
    dp = _row_dots(do_ptr, v_ptr, rows, row_ok, cols, col_ok, DV, stride_on, stride_od, stride_vn, stride_vd,
                   ACC, CAST, BLOCK_M, BLOCK_N, BLOCK_DV)
    delta = tl.load(delta_ptr + rows, mask=row_ok, other=0.0)
    return p, p * (dp - delta[:, None])


@triton.jit
def _forward_kernel(q_ptr, k_ptr, v_ptr, blocks_ptr, scale_ptr, out_ptr, lse_ptr, DK, DV,
                    stride_qn, stride_qd, stride_kn, stride_kd, stride_vn, stride_vd,
                    ACC: tl.constexpr, CAST: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr):
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
        s = _row_dots(q_ptr, k_ptr, rows, row_ok, cols, col_ok, DK, stride_qn, stride_qd, stride_kn, stride_kd,
                      ACC, CAST, BLOCK_M, BLOCK_N, BLOCK_DK) * scale
        # Only the key padding is masked: padding query rows (q = 0) keep finite scores, so no row is
        # all −inf. Every key tile has a valid column, so new_max is finite (finite inputs) and
        # exp(row_max − new_max) is 0 on the first tile.
        s = tl.where(col_ok[None, :], s, float("-inf"))
        new_max = tl.maximum(row_max, tl.max(s, 1))
        alpha = tl.exp(row_max - new_max)
        p = tl.exp(s - new_max[:, None])
        row_sum = row_sum * alpha + tl.sum(p, 1)
        v = load_rows(v_ptr, cols, col_ok, dv, DV, stride_vn, stride_vd)
        acc = tl.dot(operand(p, v.dtype, CAST), operand(v, v.dtype, CAST), acc * alpha[:, None], out_dtype=ACC,
                     input_precision="ieee")
        row_max = new_max
    out = acc / row_sum[:, None]
    tl.store(out_ptr + rows[:, None] * DV + dv[None, :], out.to(out_ptr.dtype.element_ty),
             mask=row_ok[:, None] & (dv < DV)[None, :])
    tl.store(lse_ptr + rows, row_max + tl.log(row_sum), mask=row_ok & (tl.program_id(1) == 0))


@triton.jit
def _grad_kv_kernel(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, blocks_ptr, scale_ptr, grad_k_ptr, grad_v_ptr,
                    DK, DV, stride_qn, stride_qd, stride_kn, stride_kd, stride_vn, stride_vd, stride_on, stride_od,
                    ACC: tl.constexpr, CAST: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
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
                             stride_on, stride_od, ACC, CAST, BLOCK_M, BLOCK_N, BLOCK_DK, BLOCK_DV)
        do = load_rows(do_ptr, rows, row_ok, dv, DV, stride_on, stride_od)
        grad_v = tl.dot(tl.trans(operand(p, do.dtype, CAST)), operand(do, do.dtype, CAST), grad_v,
                        out_dtype=ACC, input_precision="ieee")
        q = load_rows(q_ptr, rows, row_ok, dk, DK, stride_qn, stride_qd)
        grad_k = tl.dot(tl.trans(operand(ds, q.dtype, CAST)), operand(q, q.dtype, CAST), grad_k,
                        out_dtype=ACC, input_precision="ieee")
    grad_k = grad_k * scale
    tl.store(grad_k_ptr + cols[:, None] * DK + dk[None, :], grad_k.to(grad_k_ptr.dtype.element_ty),
             mask=col_ok[:, None] & (dk < DK)[None, :])
    tl.store(grad_v_ptr + cols[:, None] * DV + dv[None, :], grad_v.to(grad_v_ptr.dtype.element_ty),
             mask=col_ok[:, None] & (dv < DV)[None, :])


@triton.jit
def _grad_q_kernel(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, blocks_ptr, scale_ptr, grad_q_ptr,
                   DK, DV, stride_qn, stride_qd, stride_kn, stride_kd, stride_vn, stride_vd, stride_on, stride_od,
                   ACC: tl.constexpr, CAST: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr):
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
                             stride_on, stride_od, ACC, CAST, BLOCK_M, BLOCK_N, BLOCK_DK, BLOCK_DV)
        k = load_rows(k_ptr, cols, col_ok, dk, DK, stride_kn, stride_kd)
        grad_q = tl.dot(operand(ds, k.dtype, CAST), operand(k, k.dtype, CAST), grad_q, out_dtype=ACC,
                        input_precision="ieee")
    grad_q = grad_q * scale
    tl.store(grad_q_ptr + rows[:, None] * DK + dk[None, :], grad_q.to(grad_q_ptr.dtype.element_ty),
             mask=row_ok[:, None] & (dk < DK)[None, :])


# ---------------------------------------------------------------- launch helpers

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


def _plan(q: torch.Tensor, v: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The block table and the kernel arguments shared by the forward and the backward (N > 0).

    Returns:
        blocks: (num_blocks, 3) int64, one row (first row, segment start, segment end) per BLOCK-row
            block of every segment, segment by segment.
        args: DK, DV, ACC, CAST and the four block sizes. BLOCK (query and key rows alike) fits the
            longest segment, at most MAX_BLOCK, and shrinks as the head-dim chunks widen so that a
            tile stays at most TILE_ELEMENTS; BLOCK_DK/BLOCK_DV: the head dims rounded up to a power of
            two, at most _MAX_BLOCK_D (wider dims are chunked).
    """
    n, dk, dv = q.shape[0], q.shape[1], v.shape[1]
    lengths = offsets.diff()
    # One host sync: the block size depends on the longest segment, and bad offsets must not reach
    # the kernels as out-of-bounds rows.
    first, last, shortest, longest = torch.stack(
        [offsets[0], offsets[-1], lengths.min(), lengths.max()]).tolist() if lengths.numel() else (0, 0, 0, 0)
    if first != 0 or last != n or shortest < 0:
        raise ValueError(f"offsets must be non-decreasing from 0 to N = {n}, got offsets[0] = {first}, "
                         f"offsets[-1] = {last}, smallest step {shortest}")
    width = lambda d: max(MIN_BLOCK, min(_MAX_BLOCK_D, triton.next_power_of_2(d)))  # noqa: E731
    block_dk, block_dv = width(dk), width(dv)
    cap = max(MIN_BLOCK, min(MAX_BLOCK, TILE_ELEMENTS // max(block_dk, block_dv)))
    block = max(MIN_BLOCK, min(cap, triton.next_power_of_2(longest)))
    counts = (lengths + block - 1) // block
    total = int(counts.sum())
    segment = torch.repeat_interleave(counts, output_size=total)
    first_block = counts.cumsum(0) - counts
    index = torch.arange(total, device=offsets.device) - first_block[segment]
    seg_start, seg_end = offsets[segment], offsets[segment + 1]
    blocks = torch.stack([seg_start + index * block, seg_start, seg_end], 1).contiguous()
    args = dict(DK=dk, DV=dv, **dtype_args(q.dtype), BLOCK_M=block, BLOCK_N=block, BLOCK_DK=block_dk, BLOCK_DV=block_dv)
    return blocks, args


def _strides(**tensors: torch.Tensor) -> dict:
    """stride_<name>n, stride_<name>d of each (rows, dims) tensor (non-contiguous inputs are fine)."""
    return {f"stride_{name}{axis}": t.stride(i) for name, t in tensors.items() for i, axis in enumerate("nd")}


def _chunks(d: int, block_d: int) -> int:
    return max(1, triton.cdiv(d, block_d))  # at least one: chunk 0 writes lse even when dv = 0


# ---------------------------------------------------------------- ops

@torch.library.custom_op("pyfacex::triton_segment_attention", mutates_args=())
def _segment_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offsets: torch.Tensor,
                       scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention within each segment [offsets[i], offsets[i+1]) of the packed tokens.

    Args:
        q: (N, dk) queries; k: (N, dk) keys; v: (N, dv) values; one float dtype, any strides.
        offsets: (S+1,) int64 segment boundaries, offsets[0] = 0, offsets[-1] = N, non-decreasing
            (empty segments allowed).
        scale: the factor of the scores q·kᵀ.

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
    blocks, args = _plan(q, v, offsets)
    with device_guard(q):
        _forward_kernel[(blocks.shape[0], _chunks(dv, args["BLOCK_DV"]))](
            q, k, v, blocks, torch.full((1,), scale, dtype=acc, device=q.device), out, lse,
            **_strides(q=q, k=k, v=v), **args)
    return out, lse


@_segment_attention.register_fake
def _(q, k, v, offsets, scale):
    return v.new_empty((q.shape[0], v.shape[1])), q.new_empty(q.shape[0], dtype=acc_dtype(q.dtype))


@torch.library.custom_op("pyfacex::triton_segment_attention_backward", mutates_args=())
def _segment_attention_backward(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                offsets: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
                                scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of q, k, v from that of out (flash-attention backward, P recomputed from lse).

    Args:
        grad_out: (N, dv) gradient of out.
        q, k, v, offsets, scale: as given to the forward.
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
    blocks, args = _plan(q, v, offsets)
    tensors = (q, k, v, grad_out, lse.contiguous(), delta, blocks, torch.full((1,), scale, dtype=acc, device=q.device))
    strides = _strides(q=q, k=k, v=v, o=grad_out)
    with device_guard(q):
        chunks = max(_chunks(dk, args["BLOCK_DK"]), _chunks(dv, args["BLOCK_DV"]))
        _grad_kv_kernel[(blocks.shape[0], chunks)](*tensors, grad_k, grad_v, **strides, **args)
        _grad_q_kernel[(blocks.shape[0], _chunks(dk, args["BLOCK_DK"]))](*tensors, grad_q, **strides, **args)
    return grad_q, grad_k, grad_v


@_segment_attention_backward.register_fake
def _(grad_out, q, k, v, offsets, out, lse, scale):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output):
    q, k, v, offsets, scale = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, offsets, out, lse)
    ctx.scale = scale
    ctx.mark_non_differentiable(lse)


def _backward(ctx, grad_out, grad_lse):
    q, k, v, offsets, out, lse = ctx.saved_tensors
    grad_q, grad_k, grad_v = torch.ops.pyfacex.triton_segment_attention_backward(
        grad_out, q, k, v, offsets, out, lse, ctx.scale)
    return grad_q, grad_k, grad_v, None, None


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
    """
    return torch.ops.pyfacex.triton_segment_attention(q, k, v, offsets, float(scale))[0]
