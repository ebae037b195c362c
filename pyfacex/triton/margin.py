"""Triton kernels of the streaming cosine log-sum-exp (``cosine_lse``, see :mod:`pyfacex.ops.margin`).

z_ij = s·xn_i·W_j·inv_j with inv_j = 1/max(‖W_j‖, 1e-12), the target column j = labels[i] replaced
by target_logit[i] (whose derivative with respect to its cosine is target_slope[i]). No kernel materialises B×C: the forward streams class tiles through an online
max / sum-exp per row block; the backward recomputes the z tiles, once per row block for grad_xn and
once per class tile for grad_weight, so neither kernel needs atomics.

Every tile spans the whole feature dimension (``BLOCK_D`` = d rounded up to a power of two, masked):
the x block is loaded once per program and reused by every class tile, and the backward's
accumulators (BLOCK_B, BLOCK_D) and (BLOCK_C, BLOCK_D) stay in registers. Row and class blocks
shrink as d grows so a tile stays at most 16K elements.

The scale s enters the kernels folded into the column scales s·inv_j (a (C,) tensor of the
statistics dtype): a Python float argument would reach Triton as float32 and cost float64 inputs
their precision.
"""
from types import SimpleNamespace

import torch
import triton
import triton.language as tl

from ._common import MAX_BLOCK, MIN_BLOCK, TILE_ELEMENTS, acc_dtype, device_guard, dtype_args, load_rows, operand

__all__ = ["ops"]

_NORM_EPS = 1e-12  # as F.normalize and the reference


# ---------------------------------------------------------------- kernels

@triton.jit
def _scaled_cosines(x, w, scale, ACC: tl.constexpr, CAST: tl.constexpr):
    """(BLOCK_B, BLOCK_C) z = x·wᵀ·scale; x (BLOCK_B, BLOCK_D), w (BLOCK_C, BLOCK_D), scale (BLOCK_C,) = s·inv."""
    # "ieee": float32 inputs must not be rounded to tf32 (the float32 tolerance is 1e-5).
    dot = tl.dot(operand(x, x.dtype, CAST), tl.trans(operand(w, w.dtype, CAST)), out_dtype=ACC,
                 input_precision="ieee")
    return dot * scale[None, :]


@triton.jit
def _forward_kernel(xn_ptr, w_ptr, scale_ptr, labels_ptr, target_ptr, max_ptr, sumexp_ptr, nontarget_ptr,
                    B, C, D, stride_xb, stride_xd, stride_wc, stride_wd,
                    ACC: tl.constexpr, CAST: tl.constexpr,
                    BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    dims = tl.arange(0, BLOCK_D)
    x = load_rows(xn_ptr, rows, row_ok, dims, D, stride_xb, stride_xd)
    label = tl.load(labels_ptr + rows, mask=row_ok, other=-1)
    target = tl.load(target_ptr + rows, mask=row_ok, other=0.0)
    row_max = tl.full([BLOCK_B], float("-inf"), ACC)
    sumexp = tl.zeros([BLOCK_B], ACC)
    nontarget = tl.zeros([BLOCK_B], ACC)
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        col_ok = cols < C
        w = load_rows(w_ptr, cols, col_ok, dims, D, stride_wc, stride_wd)
        scale = tl.load(scale_ptr + cols, mask=col_ok, other=0.0)
        z = _scaled_cosines(x, w, scale, ACC, CAST)
        is_target = label[:, None] == cols[None, :]
        nontarget += tl.sum(tl.where(col_ok[None, :] & ~is_target, z, 0.0), 1)
        z = tl.where(is_target, target[:, None], z)
        z = tl.where(col_ok[None, :], z, float("-inf"))
        # Every tile has a valid column, so (finite inputs) new_max is finite and exp(row_max − new_max)
        # is 0 on the first tile (row_max = −inf), the rescale of the running sum after it.
        new_max = tl.maximum(row_max, tl.max(z, 1))
        sumexp = sumexp * tl.exp(row_max - new_max) + tl.sum(tl.exp(z - new_max[:, None]), 1)
        row_max = new_max
    tl.store(max_ptr + rows, row_max, mask=row_ok)
    tl.store(sumexp_ptr + rows, sumexp, mask=row_ok)
    tl.store(nontarget_ptr + rows, nontarget, mask=row_ok)


@triton.jit
def _dlogits(z, label, cols, col_ok, row_max, g_sumexp, g_nontarget, target_dz):
    """dz_ij = gS_i·exp(z_ij − max_i) + gN_i of the tile (dcos_ij = s·dz_ij), target_dz_i at the
    target column (computed on the host from the target's own statistics), 0 in the padding.

    The column scale s·inv_j is applied to the other operand (W) or after the sum (H): inv_j has no
    bound (tiny weight rows), and dz·s·inv_j could overflow float16 operands.
    """
    dz = g_sumexp[:, None] * tl.exp(z - row_max[:, None]) + g_nontarget[:, None]
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
def _grad_xn_kernel(g_sumexp_ptr, g_nontarget_ptr, target_dz_ptr, xn_ptr, w_ptr, scale_ptr, labels_ptr, max_ptr, grad_xn_ptr,
                    B, C, D, stride_xb, stride_xd, stride_wc, stride_wd,
                    ACC: tl.constexpr, CAST: tl.constexpr,
                    BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    dims = tl.arange(0, BLOCK_D)
    x = load_rows(xn_ptr, rows, row_ok, dims, D, stride_xb, stride_xd)
    label, row_max, g_sumexp, g_nontarget, target_dz = _row_terms(labels_ptr, max_ptr, g_sumexp_ptr, g_nontarget_ptr,
                                                                  target_dz_ptr, rows, row_ok)
    grad = tl.zeros([BLOCK_B, BLOCK_D], ACC)
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        col_ok = cols < C
        w = load_rows(w_ptr, cols, col_ok, dims, D, stride_wc, stride_wd)
        scale = tl.load(scale_ptr + cols, mask=col_ok, other=0.0)
        z = _scaled_cosines(x, w, scale, ACC, CAST)
        dz = _dlogits(z, label, cols, col_ok, row_max, g_sumexp, g_nontarget, target_dz)
        # s·W_j/‖W_j‖: entries at most s, safe in float16.
        w_hat = operand(w.to(ACC) * scale[:, None], w.dtype, CAST)
        grad = tl.dot(operand(dz, w.dtype, CAST), w_hat, grad, out_dtype=ACC, input_precision="ieee")
    tl.store(grad_xn_ptr + rows[:, None] * D + dims[None, :], grad.to(grad_xn_ptr.dtype.element_ty),
             mask=row_ok[:, None] & (dims < D)[None, :])


@triton.jit
def _grad_weight_kernel(g_sumexp_ptr, g_nontarget_ptr, target_dz_ptr, xn_ptr, w_ptr, inv_ptr, scale_ptr, labels_ptr, max_ptr,
                        grad_w_ptr, B, C, D, stride_xb, stride_xd, stride_wc, stride_wd,
                        ACC: tl.constexpr, CAST: tl.constexpr,
                        BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr):
    cols = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    col_ok = cols < C
    dims = tl.arange(0, BLOCK_D)
    w = load_rows(w_ptr, cols, col_ok, dims, D, stride_wc, stride_wd)
    scale = tl.load(scale_ptr + cols, mask=col_ok, other=0.0)
    inv = tl.load(inv_ptr + cols, mask=col_ok, other=0.0)
    h = tl.zeros([BLOCK_C, BLOCK_D], ACC)  # Σ_i dz_ij·xn_i
    for b0 in range(0, B, BLOCK_B):
        rows = b0 + tl.arange(0, BLOCK_B)
        row_ok = rows < B
        x = load_rows(xn_ptr, rows, row_ok, dims, D, stride_xb, stride_xd)
        label, row_max, g_sumexp, g_nontarget, target_dz = _row_terms(labels_ptr, max_ptr, g_sumexp_ptr,
                                                                      g_nontarget_ptr, target_dz_ptr, rows, row_ok)
        z = _scaled_cosines(x, w, scale, ACC, CAST)
        dz = _dlogits(z, label, cols, col_ok, row_max, g_sumexp, g_nontarget, target_dz)
        h = tl.dot(tl.trans(operand(dz, x.dtype, CAST)), operand(x, x.dtype, CAST), h, out_dtype=ACC,
                   input_precision="ieee")
    h = h * scale[:, None]  # H_j = Σ_i dcos_ij·inv_j·xn_i
    # Through the normalisation W/‖W‖: grad_W_j = H_j − inv_j²·(W_j·H_j)·W_j.
    w = w.to(ACC)
    grad = h - (inv * inv * tl.sum(w * h, 1))[:, None] * w
    tl.store(grad_w_ptr + cols[:, None] * D + dims[None, :], grad.to(grad_w_ptr.dtype.element_ty),
             mask=col_ok[:, None] & (dims < D)[None, :])


# ---------------------------------------------------------------- launch helpers

def _blocks(b: int, c: int, d: int) -> tuple[int, int, int]:
    """(BLOCK_B, BLOCK_C, BLOCK_D): small inputs get one small program, large d smaller row/class blocks."""
    block_d = max(MIN_BLOCK, triton.next_power_of_2(d))
    cap = max(MIN_BLOCK, min(MAX_BLOCK, TILE_ELEMENTS // block_d))
    fit = lambda n: max(MIN_BLOCK, min(cap, triton.next_power_of_2(n)))  # noqa: E731
    return fit(b), fit(c), block_d


def _kernel_args(xn: torch.Tensor, weight: torch.Tensor) -> dict:
    """The shape, stride and dtype arguments every kernel shares (strides: non-contiguous inputs are fine)."""
    block_b, block_c, block_d = _blocks(xn.shape[0], weight.shape[0], xn.shape[1])
    return dict(B=xn.shape[0], C=weight.shape[0], D=xn.shape[1],
                stride_xb=xn.stride(0), stride_xd=xn.stride(1), stride_wc=weight.stride(0), stride_wd=weight.stride(1),
                **dtype_args(xn.dtype), BLOCK_B=block_b, BLOCK_C=block_c, BLOCK_D=block_d)


# ---------------------------------------------------------------- ops

@torch.library.custom_op("pyfacex::triton_cosine_lse", mutates_args=())
def _cosine_lse(xn: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, target_logit: torch.Tensor,
                target_slope: torch.Tensor, s: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Online log-sum-exp statistics of z = s·xn·Wᵀ/‖W‖ with the target column replaced by target_logit.

    Args:
        xn: (B, d) embeddings (normally unit rows).
        weight: (C, d) class weights, xn's dtype.
        labels: (B,) int64 in [−1, C); −1: no target column.
        target_logit: (B,) target logits, float32 (float64 for float64 xn).
        target_slope: (B,) their derivatives with respect to the target cosines (used by the backward).
        s: the logit scale.

    Returns:
        row_max (B,), sumexp (B,), nontarget_sum (B,), target (B,) (target_logit, 0 without a
        target), inv_norm (C,), all float32 (float64 for float64 xn).
    """
    b, c = xn.shape[0], weight.shape[0]
    acc = acc_dtype(xn.dtype)
    # dtype=acc reduces in acc without a float32 copy of weight.
    inv_norm = torch.linalg.vector_norm(weight, dim=1, dtype=acc).clamp_min(_NORM_EPS).reciprocal()
    row_max = torch.full((b,), float("-inf"), dtype=acc, device=xn.device)
    sumexp = torch.zeros(b, dtype=acc, device=xn.device)
    nontarget = torch.zeros(b, dtype=acc, device=xn.device)
    target = torch.where(labels >= 0, target_logit, 0.0)
    if b == 0 or c == 0:
        return row_max, sumexp, nontarget, target, inv_norm
    args = _kernel_args(xn, weight)
    with device_guard(xn):
        _forward_kernel[(triton.cdiv(b, args["BLOCK_B"]),)](
            xn, weight, s * inv_norm, labels.contiguous(), target_logit.contiguous(), row_max, sumexp, nontarget,
            **args)
    return row_max, sumexp, nontarget, target, inv_norm


@_cosine_lse.register_fake
def _(xn, weight, labels, target_logit, target_slope, s):
    acc = acc_dtype(xn.dtype)
    rows = [xn.new_empty(xn.shape[0], dtype=acc) for _ in range(4)]
    return (*rows, weight.new_empty(weight.shape[0], dtype=acc))


@torch.library.custom_op("pyfacex::triton_cosine_lse_backward", mutates_args=())
def _cosine_lse_backward(grad_sumexp: torch.Tensor, grad_nontarget_sum: torch.Tensor, grad_target: torch.Tensor,
                         xn: torch.Tensor, weight: torch.Tensor, inv_norm: torch.Tensor, labels: torch.Tensor,
                         target_logit: torch.Tensor, target_slope: torch.Tensor, row_max: torch.Tensor,
                         s: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of xn and weight (through its normalisation) from those of sumexp, nontarget_sum and target.

    Args:
        grad_sumexp, grad_nontarget_sum, grad_target: (B,) statistics dtype.
        xn: (B, d); weight: (C, d); labels: (B,) int64.
        target_logit, target_slope: (B,) as given to the forward.
        inv_norm, row_max: (C,) and (B,) as the forward returned them.
        s: the logit scale of the forward.

    Returns:
        grad_xn (B, d) in xn's dtype, grad_weight (C, d) in weight's dtype.
    """
    b, c = xn.shape[0], weight.shape[0]
    if b == 0 or c == 0:
        return torch.zeros(xn.shape, dtype=xn.dtype, device=xn.device), torch.zeros(
            weight.shape, dtype=weight.dtype, device=weight.device)
    # The kernels write every element.
    grad_xn = torch.empty(xn.shape, dtype=xn.dtype, device=xn.device)
    grad_weight = torch.empty(weight.shape, dtype=weight.dtype, device=weight.device)
    args = _kernel_args(xn, weight)
    # The target column: dcos_iy = slope_i·(gS_i·exp(t_i − max_i) + gT_i), in the kernels' unit dz = dcos/s.
    target_dz = (grad_sumexp * torch.exp(target_logit - row_max) + grad_target) * target_slope / s
    vectors = [t.contiguous() for t in (grad_sumexp, grad_nontarget_sum, target_dz)]
    inv_norm, labels, row_max = inv_norm.contiguous(), labels.contiguous(), row_max.contiguous()
    scale = s * inv_norm
    with device_guard(xn):
        _grad_xn_kernel[(triton.cdiv(b, args["BLOCK_B"]),)](
            *vectors, xn, weight, scale, labels, row_max, grad_xn, **args)
        _grad_weight_kernel[(triton.cdiv(c, args["BLOCK_C"]),)](
            *vectors, xn, weight, inv_norm, scale, labels, row_max, grad_weight, **args)
    return grad_xn, grad_weight


@_cosine_lse_backward.register_fake
def _(grad_sumexp, grad_nontarget_sum, grad_target, xn, weight, inv_norm, labels, target_logit, target_slope, row_max, s):
    return xn.new_empty(xn.shape), weight.new_empty(weight.shape)


def _register_autograd() -> None:
    # pyfacex.ops.margin owns the backward formula shared with the native kernels; it imports this
    # module only on first use, so importing it here makes no cycle.
    from ..ops.margin import _backward_fn

    setup, backward = _backward_fn(torch.ops.pyfacex.triton_cosine_lse_backward)
    torch.library.register_autograd("pyfacex::triton_cosine_lse", backward, setup_context=setup)


# Once, at import: ops() is called on every op call, also inside torch.compile'd code, which must
# not see a registration.
_register_autograd()
_OPS = SimpleNamespace(forward=torch.ops.pyfacex.triton_cosine_lse,
                       backward=torch.ops.pyfacex.triton_cosine_lse_backward)


def ops() -> SimpleNamespace:
    """The Triton pair of ``cosine_lse`` (autograd registered).

    Returns:
        a namespace with ``forward(xn, weight, labels, target_logit, target_slope, s)`` -> (row_max
        (B,), sumexp (B,), nontarget_sum (B,), target (B,), inv_norm (C,)) and ``backward(g_sumexp,
        g_nontarget, g_target, xn, weight, inv_norm, labels, target_logit, target_slope, row_max, s)``
        -> (grad_xn (B, d), grad_weight (C, d)):
        ``torch.ops.pyfacex.triton_cosine_lse`` and ``torch.ops.pyfacex.triton_cosine_lse_backward``.
    """
    return _OPS
