"""Set-level attention: LFENet's Local Information Transfer (LFENet Sec. III-C, eq. 1-5).

A ragged batch of sets (set i: T_i images, packed along dim 0 with image ``offsets``) is seen as
N_i = T_i·h·w local features of dim d per set. Every local feature attends to the local features of
its own set only (or of its own segment, see below), and receives out = x + A·v (eq. 5), with the
relation A (docs/readings.md "LFENet"):

* ``softmax_b`` (eq. 3): A = softmax(scale·qᵀk) over the keys of the set; q, k = learnable
  projections to ``qk_dim``; ``scale`` = 1.0 as the paper (no 1/√d);
* ``softmax_a`` (eq. 2): A = softmax(scale·lᵀl) of the raw local features (no Q, K);
* ``scaled_dot`` (eq. 4): A = qᵀk/N, linear in v, so A·v = q·(kᵀv)/N is computed in O(N·d²) without
  the N×N map.

Test-time segmentation by θ: a set of T > θ images is split into K = ⌈T/θ⌉ consecutive segments
of θ images (the last one T − (K−1)·θ), and attention never crosses a segment (N is then the
segment's size in eq. 4).

The attention itself is two ops over token segments packed with token offsets (like cu_seqlens):
:func:`segment_softmax_attention` and :func:`segment_linear_attention`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._ext import native
from ._backend import Kernels, declare_kernels, resolve
from ._checks import FLOAT_DTYPES, check_offsets, check_same_device, check_tensor, reads_values

__all__ = [
    "RELATIONS",
    "segment_bounds",
    "segment_softmax_attention",
    "segment_linear_attention",
    "lit_attention",
]

# The native paths are compositions of ATen ops, so they run on every device torch does. lit_attention
# dispatches to the softmax op (softmax_a/b) or the linear one (scaled_dot, which has no Triton kernel).
_SOFTMAX_KERNELS = declare_kernels(Kernels(("native", "triton")), "segment_softmax_attention", "lit_attention")
_LINEAR_KERNELS = declare_kernels(Kernels(("native",)), "segment_linear_attention")

RELATIONS = ("softmax_b", "softmax_a", "scaled_dot")


# ---------------------------------------------------------------- segments

def segment_bounds(offsets: list[int], segment: int | None = None) -> list[int]:
    """Image offsets of the attention segments: each set [a, b) split into runs of ``segment`` images.

    Example: offsets [0, 2, 9] with segment 3 -> [0, 2, 5, 8, 9] (a set of 2; a set of 7 as 3, 3, 1).
    Empty sets give no segment.

    Args:
        offsets: a list (or tuple) of non-decreasing Python ints, read on the host (a tensor's
            ``.tolist()``).
        segment: θ, an int > 0, or None for one segment per set.
    """
    if not isinstance(offsets, (list, tuple)):
        raise TypeError(f"offsets must be a list of ints (host values: call .tolist() on a tensor), got "
                        f"{type(offsets).__name__}")
    for i, o in enumerate(offsets):
        if not isinstance(o, int):
            raise TypeError(f"offsets must be a list of ints, got offsets[{i}] = {o!r} ({type(o).__name__})")
    for i in range(1, len(offsets)):
        if offsets[i] < offsets[i - 1]:
            raise ValueError(f"offsets must be non-decreasing, but offsets[{i}] = {offsets[i]} < "
                             f"offsets[{i - 1}] = {offsets[i - 1]}")
    if segment is not None and (not isinstance(segment, int) or segment <= 0):
        raise ValueError(f"segment must be None or an int θ > 0 (images per segment), got {segment!r}")
    if segment is None:
        return sorted(set(offsets))
    bounds = [0]
    for start, end in zip(offsets[:-1], offsets[1:]):
        bounds.extend(range(start + segment, end, segment))
        if end > start:
            bounds.append(end)
    return bounds


@torch.compiler.disable
def _segment_token_offsets(offsets: torch.Tensor, segment: int, positions: int, images: int) -> torch.Tensor:
    """Token offsets of the θ segments of sets given by image ``offsets`` (``positions`` tokens per image).

    Their number depends on the offsets' values, which ``torch.compile`` does not see while tracing:
    this runs eagerly there (a graph break), so a compiled LIT segments exactly as an eager one. Where
    values must not be read on the host (:func:`~pyfacex.ops.sync_free`, CUDA-graph capture) the
    segments are found on the device and padded with empty ones to a fixed count (N + 1 offsets for
    N images): the same attention, no sync.
    """
    if not reads_values(offsets):
        return _segment_token_offsets_on_device(offsets, segment, images) * positions
    bounds = segment_bounds(offsets.tolist(), segment)
    return torch.tensor([b * positions for b in bounds], dtype=torch.int64, device=offsets.device)


def _segment_token_offsets_on_device(offsets: torch.Tensor, segment: int, images: int) -> torch.Tensor:
    """:func:`segment_bounds` of ``images`` images without reading ``offsets`` on the host: image i
    starts a segment when it is a multiple of θ images into its set; the starts, padded with N (empty
    segments) to N entries, then N."""
    index = torch.arange(images, device=offsets.device)
    owner = torch.bucketize(index, offsets[1:], right=True).clamp(max=max(offsets.shape[0] - 2, 0))
    starts = torch.nonzero_static((index - offsets[owner]) % segment == 0, size=images, fill_value=images)
    return torch.cat([starts.reshape(-1), offsets.new_full((1,), images)])


def _segment_ids(offsets: torch.Tensor, n: int) -> torch.Tensor:
    return torch.bucketize(torch.arange(n, device=offsets.device), offsets[1:], right=True)


# ---------------------------------------------------------------- references (dense masked attention)

def segment_softmax_attention_reference(q, k, v, offsets, scale=1.0):
    """Pure-PyTorch :func:`segment_softmax_attention`: the N×N scores with other segments masked out."""
    ids = _segment_ids(offsets, q.shape[0])
    scores = scale * (q @ k.t())
    scores = scores.masked_fill(ids[:, None] != ids[None, :], float("-inf"))
    return torch.softmax(scores, dim=1) @ v


def segment_linear_attention_reference(q, k, v, offsets):
    """Pure-PyTorch :func:`segment_linear_attention`: the quadratic formula (qᵀk/N)·v of eq. 4."""
    ids = _segment_ids(offsets, q.shape[0])
    sizes = (offsets[1:] - offsets[:-1]).to(q.dtype)[ids]
    relation = (q @ k.t()).masked_fill(ids[:, None] != ids[None, :], 0.0) / sizes[:, None]
    return relation @ v


# ---------------------------------------------------------------- native: segments grouped by length

def _length_groups(segments, device: torch.device):
    """(length, (g, length) token indices) for every distinct length among the (start, end) token
    ``segments``: equal-length segments stack into one batched call, so a ragged batch costs one call
    per distinct length. Empty segments are skipped."""
    by_length: dict[int, list[int]] = {}
    for start, end in segments:
        if end > start:
            by_length.setdefault(end - start, []).append(start)
    for length, starts in by_length.items():
        index = torch.tensor(starts, device=device)[:, None] + torch.arange(length, device=device)
        yield length, index


# Without gradients on CPU, a segment of at least this many tokens attends alone, on views of q, k, v,
# and writes its rows of the output in place: no gathers. Shorter segments (a single 7×7 image is 49
# tokens) are still batched by length, where one call per segment would cost more than it computes;
# so is everything on a GPU, where each call is a kernel launch.
_VIEW_MIN_TOKENS = 128


def _grouped(q, k, v, bounds, attend):
    lengths = {end - start for start, end in zip(bounds[:-1], bounds[1:]) if end > start}
    if len(lengths) == 1:  # segments tile [0, N): equal lengths are plain views, no gather or scatter
        (length,) = lengths
        shaped = [t.reshape(-1, length, t.shape[1]) for t in (q, k, v)]
        return attend(*shaped, length).reshape(-1, v.shape[1])
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))):
        return _grouped_inference(q, k, v, bounds, attend)
    # Ragged: one permutation sorts the tokens by segment length, so every group is a contiguous view
    # of the sorted copies, and one inverse gather restores the order. Gathering and scattering per
    # group instead (profiled on 64 sets of 1-20 images: 18 groups) copied the whole output once per
    # group, and its backward summed a full-size gradient per group and operand: 38 % of the forward.
    groups = list(_length_groups(zip(bounds[:-1], bounds[1:]), q.device))
    if not groups:  # no tokens: the dense formula costs nothing and keeps q, k and v in the graph (zero grads)
        return (q @ k.t()) @ v
    order = torch.cat([index.reshape(-1) for _, index in groups])
    # torch.split, not slices: the backward of a slice fills a gradient of the whole tensor with zeros
    # (per group and operand: 21 % of a forward + backward), split's concatenates the parts once.
    sizes = [index.numel() for _, index in groups]
    parts = zip(*(torch.split(t[order], sizes) for t in (q, k, v)))
    outs = [attend(*(t.reshape(-1, length, t.shape[1]) for t in part), length).reshape(-1, v.shape[1])
            for (length, _), part in zip(groups, parts)]
    return torch.cat(outs)[torch.argsort(order)]


def _grouped_inference(q, k, v, bounds, attend):
    # Long segments one by one on views, written in place; the short ones gathered by length, one group
    # at a time, written in place. On 64 ragged sets of 1-20 images the per-group gathers and scatters
    # were a part of the call's deficit against a per-set loop that this removes (bench/README.md).
    out = v.new_empty(q.shape[0], v.shape[1])
    view_min = _VIEW_MIN_TOKENS if q.device.type == "cpu" else float("inf")
    short = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end - start >= view_min:
            attend(*(t[start:end].unsqueeze(0) for t in (q, k, v)), end - start, out=out[start:end].unsqueeze(0))
        else:
            short.append((start, end))
    for length, index in _length_groups(short, q.device):
        out.index_copy_(0, index.reshape(-1), attend(q[index], k[index], v[index], length).reshape(-1, v.shape[1]))
    return out


def _softmax_native(q, k, v, bounds, scale):
    # Batched matmuls and softmax per group. Measured on CPU against torch's SDPA on the same groups
    # (bench/README.md): SDPA's math kernel (qk_dim != d) was 1.4x slower, its fused flash kernel
    # (equal dims) 3x slower. The scores of one group are held at once: O(length²) per segment
    # (3.7 MiB at LFENet's θ = 20 images × 49 positions); the Triton kernel is O(N).
    return _grouped(q, k, v, bounds,
                    lambda qg, kg, vg, length, out=None: _softmax_chunks(qg, kg, vg, length, scale, out=out))


_SCORE_CHUNK = 1 << 23  # score elements per batched call (32 MiB in float32)


def _softmax_chunks(q, k, v, length, scale, out=None):
    # Segments in chunks whose scores stay within _SCORE_CHUNK: the score memory of a group no
    # longer grows with its number of segments. baddbmm scales in the GEMM (no scaled copy).
    # (split, not slices: see _grouped.) With ``out`` ((g, length, dv), no gradients) the products
    # are written into it.
    step = max(1, _SCORE_CHUNK // (length * length))
    parts = [torch.split(t, step) for t in (q, k, v)] + ([torch.split(out, step)] if out is not None else [])
    outs = []
    for qc, kc, vc, *into in zip(*parts):
        scores = torch.baddbmm(qc.new_empty(()).expand(qc.shape[0], length, length), qc, kc.transpose(1, 2),
                               beta=0.0, alpha=scale)
        outs.append(torch.bmm(torch.softmax(scores, dim=2), vc, out=into[0] if into else None))
    return out if out is not None else outs[0] if len(outs) == 1 else torch.cat(outs)


def _linear_segments(q, k, v, length, out=None):
    # q·(kᵀv)/N_s per segment; with ``out`` (no gradients) written into it.
    return torch.bmm(q, k.transpose(1, 2) @ v, out=out).div_(length) if out is not None \
        else q @ (k.transpose(1, 2) @ v) / length


def _linear_native(q, k, v, bounds):
    return _grouped(q, k, v, bounds, _linear_segments)


# ---------------------------------------------------------------- native: the CPU inference kernel

if native.loaded:
    # x + A·v in x's memory format: the kernel allocates with empty_like(x), as this does.
    @torch.library.register_fake("pyfacex::lit_attention_inference")
    def _(x, segment_offsets, w_q, w_k, w_v, b_q, b_k, b_v, relation, scale):
        return torch.empty_like(x)


# ---------------------------------------------------------------- public ops

def _check_qkv(q, k, v, offsets) -> list[int] | None:
    check_tensor(q, "q", dtypes=FLOAT_DTYPES, dim=2)
    check_tensor(k, "k", dtypes=FLOAT_DTYPES, dim=2)
    check_tensor(v, "v", dtypes=FLOAT_DTYPES, dim=2)
    if k.shape != q.shape:
        raise ValueError(f"k must have q's shape {tuple(q.shape)}, got {tuple(k.shape)}")
    if v.shape[0] != q.shape[0]:
        raise ValueError(f"v must have N = {q.shape[0]} rows (q's), got {v.shape[0]}")
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise TypeError(f"{name} must have q's dtype {q.dtype}, got {t.dtype}")
        check_same_device(t, name, q, "q")
    return check_offsets(offsets, q)


def segment_softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offsets: torch.Tensor,
                              scale: float = 1.0) -> torch.Tensor:
    """softmax(scale·q kᵀ)·v within each segment of tokens (LFENet eq. 2-3, 5 without the residual).

    Args:
        q, k: (N, dk) queries and keys; v: (N, dv) values; same dtype and device.
        offsets: (S+1,) int64 token offsets of the segments (offsets[0] = 0, offsets[-1] = N).
        scale: multiplies the scores (1.0 in the paper).

    Returns:
        (N, dv). Memory: O(N·d) on the Triton path; the native CPU path holds the scores of one
        group of equal-length segments at a time (O(length²) per segment).
    """
    bounds = _check_qkv(q, k, v, offsets)
    backend = resolve("segment_softmax_attention", _SOFTMAX_KERNELS, q.device, q.dtype)
    if backend == "triton":
        from ..triton.attention import segment_attention  # triton is optional: imported on use

        return segment_attention(q, k, v, offsets, float(scale))
    if backend == "native" and bounds is not None:
        return _softmax_native(q, k, v, bounds, scale)
    return segment_softmax_attention_reference(q, k, v, offsets, scale)


def segment_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(q kᵀ / N_s)·v within each segment s of N_s tokens, as q·(kᵀv)/N_s in O(N·dk·dv) (LFENet eq. 4).

    Args:
        q, k: (N, dk); v: (N, dv); offsets: (S+1,) int64 token offsets.

    Returns:
        (N, dv); memory O(S·dk·dv) besides the output, never N×N (the reference builds N×N).
    """
    bounds = _check_qkv(q, k, v, offsets)
    if resolve("segment_linear_attention", _LINEAR_KERNELS, q.device) == "native" and bounds is not None:
        return _linear_native(q, k, v, bounds)
    return segment_linear_attention_reference(q, k, v, offsets)


def _checked_weight(weight, name, tokens, out_dim=None):
    """``weight`` (out, d) for features of d = tokens.shape[1] channels, in the tokens' dtype."""
    check_tensor(weight, name, dtypes=FLOAT_DTYPES, dim=2)
    if weight.shape[1] != tokens.shape[1] or (out_dim is not None and weight.shape[0] != out_dim):
        expected = f"({out_dim if out_dim is not None else 'qk_dim'}, {tokens.shape[1]})"
        raise ValueError(f"{name} must be {expected} (out, in), got {tuple(weight.shape)}")
    return weight.to(tokens.dtype)


def _project(tokens, weight, bias, name, out_dim=None):
    bias = None if bias is None else bias.to(tokens.dtype)
    return F.linear(tokens, _checked_weight(weight, name, tokens, out_dim), bias)


def lit_attention(x: torch.Tensor, offsets: torch.Tensor, w_q: torch.Tensor | None, w_k: torch.Tensor | None,
                  w_v: torch.Tensor, b_q: torch.Tensor | None = None, b_k: torch.Tensor | None = None,
                  b_v: torch.Tensor | None = None, *, relation: str = "softmax_b", scale: float = 1.0,
                  segment: int | None = None) -> torch.Tensor:
    """Local Information Transfer over a ragged batch of sets of feature maps (LFENet eq. 1-5).

    Args:
        x: (B, d, h, w) feature maps of B images, packed by set.
        offsets: (b+1,) int64 image offsets of the b sets (offsets[-1] = B).
        w_q, w_k: (qk_dim, d) query and key projections (1×1 convolutions); unused (may be None)
            for ``softmax_a``.
        w_v: (d, d) value projection; b_q, b_k, b_v: optional biases.
        relation: ``"softmax_b"`` (eq. 3), ``"softmax_a"`` (eq. 2) or ``"scaled_dot"`` (eq. 4).
        scale: score multiplier of the softmax relations (1.0 as the paper).
        segment: θ: sets of more than θ images attend within consecutive segments of θ images.

    Returns:
        (B, d, h, w): x + A·v (eq. 5).

    On CPU without gradients, ``native`` runs a C++ kernel: every segment whole on one thread (its
    projections, relation and residual), so a ragged batch in one call beats a loop over its sets;
    it holds at most 2^20 scores per thread, and its output has x's memory format.
    """
    check_tensor(x, "x", dtypes=FLOAT_DTYPES, dim=4)
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")
    if segment is not None and (not isinstance(segment, int) or segment <= 0):
        raise ValueError(f"segment must be None or an int θ > 0 (images per segment), got {segment!r}")
    check_offsets(offsets, x)
    if relation != "softmax_a" and (w_q is None or w_k is None):
        raise ValueError(f"relation {relation!r} needs w_q and w_k")
    if _runs_inference_kernel(x, offsets, (w_q, w_k, w_v, b_q, b_k, b_v)):
        return _lit_attention_inference(x, offsets, w_q, w_k, w_v, b_q, b_k, b_v, relation, scale, segment)
    return _lit_attention(x, offsets, w_q, w_k, w_v, b_q, b_k, b_v, relation, scale, segment)


def _runs_inference_kernel(x, offsets, tensors) -> bool:
    """Whether :func:`lit_attention` runs the C++ inference kernel: native on CPU, nothing to
    differentiate, and the offsets may be read on the host (not while ``torch.compile`` traces, which
    takes the ATen path whole, nor inside :func:`~pyfacex.ops.sync_free`)."""
    if x.device.type != "cpu" or not reads_values(offsets):
        return False
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, *tensors)):
        return False
    return resolve("lit_attention", _SOFTMAX_KERNELS, x.device, x.dtype) == "native"


def _lit_attention_inference(x, offsets, w_q, w_k, w_v, b_q, b_k, b_v, relation, scale, segment):
    # The native kernel (csrc/ops/cpu/attention.cpp) runs every segment whole on one thread. It takes
    # the weights checked and in x's dtype, as the ATen path's projections do.
    dim = x.shape[1]
    w_v = _checked_weight(w_v, "w_v", x, dim)
    if relation == "softmax_a":
        w_q = w_k = b_q = b_k = None
    else:
        w_q = _checked_weight(w_q, "w_q", x)
        w_k = _checked_weight(w_k, "w_k", x, w_q.shape[0])
    b_q, b_k, b_v = (None if b is None else b.to(x.dtype) for b in (b_q, b_k, b_v))
    bounds = segment_bounds(offsets.tolist(), segment)
    return torch.ops.pyfacex.lit_attention_inference(x, torch.tensor(bounds, dtype=torch.int64), w_q, w_k, w_v,
                                                     b_q, b_k, b_v, relation, float(scale))


def _lit_attention(x, offsets, w_q, w_k, w_v, b_q, b_k, b_v, relation, scale, segment):
    # lit_attention on checked arguments, composed of ATen ops (with autograd; any device).
    batch, dim, height, width = x.shape
    positions = height * width
    tokens = x.permute(0, 2, 3, 1).reshape(batch * positions, dim)  # image-major: sets stay contiguous
    if segment is None:  # one segment per set; no values read, so torch.compile traces it whole
        token_offsets = offsets * positions
    else:
        token_offsets = _segment_token_offsets(offsets, segment, positions, batch)
    v = _project(tokens, w_v, b_v, "w_v", dim)
    if relation == "softmax_a":
        moved = segment_softmax_attention(tokens, tokens, v, token_offsets, scale)
    else:
        q = _project(tokens, w_q, b_q, "w_q")
        k = _project(tokens, w_k, b_k, "w_k", q.shape[1])
        if relation == "softmax_b":
            moved = segment_softmax_attention(q, k, v, token_offsets, scale)
        else:
            moved = segment_linear_attention(q, k, v, token_offsets)
    return torch.add(x, moved.reshape(batch, height, width, dim).permute(0, 3, 1, 2))
