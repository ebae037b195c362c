"""Margin-softmax losses of face recognition: combined margins, AdaFace, and the fused cross-entropy.

The combined margin (insightface; docs/readings.md "Margin heads") replaces the target logit of sample i by
s·φ(cos θ) with φ(cos θ) = cos(m1·θ + m2) − m3: SphereFace m1 > 1, ArcFace m2 (0.5), CosFace m3
(0.4). Two gradients are legitimate and both are offered:

* ``grad="exact"``: the derivative of φ. Past m1·θ + m2 = π, cos(m1·θ + m2) turns back up, so φ
  would stop being monotone in θ. There φ continues as a straight line in cos θ with slope 1 from
  the point where the angle reaches π: φ = cos θ − cos θ* − 1 − m3, θ* = (π − m2)/m1; continuous,
  monotone, and the target keeps its gradient. (insightface's older ``th``/``mm`` fallback,
  cos θ − m·sin m, does the same with a jump of −(1 − cos m − m·sin m) at θ = π − m.) Holding the
  angle at π instead (gradient 0 there) is a trap, found by the reproductions
  (docs/reproductions/lgaf.md): once a sample's embedding points away from every class centre, its
  target stops pulling while the other classes keep pushing, so "every embedding opposite every
  centre" absorbs training with a loss near ln C, below a healthy run's; tiny networks collapsed
  into it. Below m1·θ + m2 = 0 (AdaFace's negative m2 on easy faces) the angle is held at 0.
  cos θ is clamped to [−1 + 1e-7, 1 − 1e-7] before acos, so dφ/dcos stays finite at θ → 0.
* ``grad="straight_through"``: insightface arcface_torch's current behaviour: the value of
  cos(m1·acos(clamp(cos, −1, 1)) + m2) − m3, no angle clamp, and dφ/dcos = 1, so the gradient of
  the loss with respect to the cosines is s·(softmax − onehot). Its pull on a target does not fade
  as θ nears θ*, where the exact slope sin(m1·θ + m2)/sin θ (m1 = 1) falls to 0: on tiny networks the
  exact gradient stalled two of four trainings on a loss plateau, so the reproductions train with
  this one (docs/reproductions/margin-gradient.md).

AdaFace (Kim et al. 2022) makes the margin per sample from the standardised feature norm
ẑ = clip(h·(‖x‖ − μ)/(σ + eps), −1, 1): m2 = −m·ẑ, m3 = m·ẑ + m (:func:`adaface_margins`).

The fused :func:`margin_cross_entropy` never builds the B×C logit matrix: the kernels stream the
classes in tiles with an online log-sum-exp (:func:`cosine_logsumexp`), keeping per-row max and sum,
and recompute the tiles in the backward. (The CPU kernels keep the B·C dot products for the backward
instead when they fit in 64 MiB, about 32k classes at B = 512: one GEMM of four fewer.) The margin
touches only the B target logits, so it is plain autograd over (B,) tensors here and the kernels
hold no margin arithmetic at all.

Label −1 means "this sample's class is not in ``weight``" (PartialFC: on another rank): the row has
no target logit on this shard, its other logits still count.
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .._ext import native
from ._backend import Kernels, declare_kernels, resolve
from ._checks import FLOAT_DTYPES, check_finite, check_labels, check_same_device, check_tensor, reads_values

__all__ = [
    "combined_margin",
    "combined_margin_slope",
    "adaface_margins",
    "margin_logits",
    "cosine_logsumexp",
    "margin_targets",
    "margin_cross_entropy",
    "MarginCrossEntropy",
]

GRAD_MODES = ("exact", "straight_through")
_COS_EPS = 1e-7  # keeps acos' derivative finite at θ → 0 and θ → π
_NORM_EPS = 1e-12  # as F.normalize
# C++ kernels only: on CUDA the fused loss runs on Triton (or, without it, on the reference).
_KERNELS = declare_kernels(Kernels(("native", "triton"), native_devices=("cpu",)), "cosine_logsumexp",
                           "margin_cross_entropy")


def stat_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulation dtype of per-row statistics: float64 for float64 inputs, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------- margins (B-sized, plain autograd)

def _check_margins(rows: int, name: str, ref: torch.Tensor, **margins) -> None:
    """Each margin is a real number or a (rows,) tensor on ``ref``'s device (``name``: what has the rows)."""
    for key, m in margins.items():
        if isinstance(m, torch.Tensor):
            if m.shape != (rows,):
                raise ValueError(f"{key} must be a float or a (B,) = ({rows},) tensor (one per {name} row), "
                                 f"got shape {tuple(m.shape)}")
            check_same_device(m, key, ref, name)
        elif not isinstance(m, numbers.Real):
            raise TypeError(f"{key} must be a float or a (B,) tensor, got {type(m).__name__}")


def _check_grad_mode(grad: str) -> None:
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {GRAD_MODES}, got {grad!r}")


def _check_cos(cos: torch.Tensor, m2, m3=0.0) -> None:
    check_tensor(cos, "cos", dtypes=FLOAT_DTYPES, dim=1)
    _check_margins(cos.shape[0], "cos", cos, m2=m2, m3=m3)


def combined_margin(cos: torch.Tensor, m1: float = 1.0, m2: float | torch.Tensor = 0.0, m3: float | torch.Tensor = 0.0,
                    grad: str = "exact") -> torch.Tensor:
    """φ(cos θ) = cos(m1·θ + m2) − m3, the combined margin of the target cosine (not scaled by s).

    Args:
        cos: (B,) target cosines cos θ_{y_i}.
        m1: multiplicative angular margin (SphereFace; 1 for ArcFace and CosFace).
        m2: additive angular margin (ArcFace 0.5), a float or a (B,) tensor (AdaFace).
        m3: additive cosine margin (CosFace 0.4), a float or a (B,) tensor (AdaFace).
        grad: ``"exact"`` or ``"straight_through"`` (see the module docstring).

    Returns:
        (B,) φ, same dtype as ``cos``.
    """
    _check_grad_mode(grad)
    _check_cos(cos, m2, m3)
    if grad == "straight_through":
        with torch.no_grad():
            value = torch.cos(m1 * torch.acos(cos.clamp(-1.0, 1.0)) + m2) - m3
        return cos + (value - cos).detach()
    if m1 == 1.0 and not isinstance(m2, torch.Tensor) and m2 == 0.0:
        return cos - m3  # CosFace: no angle, no acos round trip
    theta = torch.acos(cos.clamp(-1.0 + _COS_EPS, 1.0 - _COS_EPS))
    angle = m1 * theta + m2
    on_arc = torch.cos(angle.clamp(0.0, math.pi)) - m3
    # past π: the straight continuation in cos θ from θ* = (π − m2)/m1 (module docstring)
    cos_limit = torch.cos(torch.as_tensor((math.pi - m2) / m1, dtype=cos.dtype, device=cos.device))
    return torch.where(angle > math.pi, cos - cos_limit - 1.0 - m3, on_arc)


def combined_margin_slope(cos: torch.Tensor, m1: float = 1.0, m2: float | torch.Tensor = 0.0,
                          grad: str = "exact") -> torch.Tensor:
    """dφ/dcos θ of :func:`combined_margin` in closed form (equal to its autograd derivative).

    ``"straight_through"`` and CosFace (m1 = 1, m2 = 0): 1. Otherwise, with c = cos θ clamped to
    [−1 + 1e-7, 1 − 1e-7] and angle = m1·θ + m2: m1·sin(angle)/√(1 − c²) while 0 ≤ angle ≤ π and cos θ
    is inside the clamp, 0 where either clamp holds, and 1 past π (the straight continuation). Closed
    form so that :func:`margin_cross_entropy` stays one graph under ``torch.compile`` (an autograd
    call inside the forward would break it).

    Shapes: cos (B,); m2 a float or (B,) -> (B,), cos's dtype.
    """
    _check_grad_mode(grad)
    _check_cos(cos, m2)
    if grad == "straight_through" or (m1 == 1.0 and not isinstance(m2, torch.Tensor) and m2 == 0.0):
        return torch.ones_like(cos)
    lo, hi = -1.0 + _COS_EPS, 1.0 - _COS_EPS
    c = cos.clamp(lo, hi)
    angle = m1 * torch.acos(c) + m2
    on_arc = (angle >= 0.0) & (angle <= math.pi) & (cos >= lo) & (cos <= hi)
    arc_slope = torch.where(on_arc, m1 * torch.sin(angle) / torch.sqrt(1.0 - c * c), 0.0)
    return torch.where(angle > math.pi, 1.0, arc_slope).to(cos.dtype)


def adaface_margins(norms: torch.Tensor, stats: torch.Tensor, m: float = 0.4, h: float = 0.333):
    """AdaFace's per-sample margins from the feature norms: (m2, m3) = (−m·ẑ, m·ẑ + m).

    ẑ = clip(h·(‖x‖ − μ)/σ', −1, 1) is detached (AdaFace's margin scaler carries no gradient).

    Args:
        norms: (B,) feature norms ‖x_i‖.
        stats: (2,) = [μ, σ + eps], as :meth:`pyfacex.nn.NormStats.stats` returns them.
        m: the margin (0.4 in AdaFace).
        h: concentration of the standardised norm (0.333).

    Returns:
        m2 (B,) and m3 (B,) float32, for :func:`combined_margin` or :func:`margin_cross_entropy`.
    """
    check_tensor(norms, "norms", dtypes=FLOAT_DTYPES, dim=1)
    check_tensor(stats, "stats", dtypes=FLOAT_DTYPES, dim=1)
    if stats.shape[0] != 2:
        raise ValueError(f"stats must be (2,) = [mean, std + eps], got shape {tuple(stats.shape)}")
    check_same_device(stats, "stats", norms, "norms")
    z = (h * (norms.detach().float() - stats[0].float()) / stats[1].float()).clamp(-1.0, 1.0)
    return -m * z, m * z + m


def margin_logits(cos: torch.Tensor, labels: torch.Tensor, s: float = 64.0, m1: float = 1.0,
                  m2: float | torch.Tensor = 0.5, m3: float | torch.Tensor = 0.0, grad: str = "exact") -> torch.Tensor:
    """The full (B, C) margin logits s·cos with row i's target replaced by s·φ (eager; builds B×C).

    For users who need the logits themselves; :func:`margin_cross_entropy` computes the loss without
    them. Rows with label −1 have no target and stay s·cos.

    Shapes: cos (B, C); labels (B,) int64 (or int32) in [−1, C); m2, m3 floats or (B,) -> (B, C), cos's dtype.
    """
    _check_grad_mode(grad)
    check_tensor(cos, "cos", dtypes=FLOAT_DTYPES, dim=2)
    check_tensor(labels, "labels", dtypes=(torch.int64, torch.int32), dim=1)
    if labels.shape[0] != cos.shape[0]:
        raise ValueError(f"labels must have B = {cos.shape[0]} entries (one per row of cos), got {labels.shape[0]}")
    check_same_device(labels, "labels", cos, "cos")
    _check_margins(cos.shape[0], "cos", cos, m2=m2, m3=m3)
    check_labels(labels, cos.shape[1], "C")
    rows = torch.nonzero(labels >= 0).squeeze(1)
    target = cos[rows, labels[rows]]
    pick = lambda m: m[rows] if isinstance(m, torch.Tensor) else m  # noqa: E731
    logits = cos.index_put((rows, labels[rows]), combined_margin(target, m1, pick(m2), pick(m3), grad))
    return s * logits


# ---------------------------------------------------------------- the streaming log-sum-exp op

class CosineLSE(NamedTuple):
    """Per-row statistics of the scaled cosine logits z_ij = s·cos_ij, cos_ij = x̂_i·W_j/‖W_j‖, over a
    class shard, with the target column j = y_i replaced by the margin target logit t_i.

    The target column has the value t_i and the derivative ``target_slope``_i with respect to
    cos_iy (t_i = s·φ(cos_iy) is computed outside the kernels, from B cosines): its gradient thus
    flows into the same tiled GEMMs as every other column's, and no (C, d) gradient of a gather of
    target rows is ever formed.

    With inter-class filtering (``filter_threshold`` τ, insightface's ``interclass_filtering_threshold``)
    a non-target column whose cos_ij > τ counts as cos_ij = 0, a constant: z_ij = 0, no gradient.

    Attributes:
        row_max: (B,) max_j z_ij (−inf for a row with no column); constant for autograd.
        sumexp: (B,) Σ_j exp(z_ij − row_max_i).
        nontarget_sum: (B,) Σ_{j ≠ y_i} z_ij (label smoothing needs Σ_j z_ij).
        target: (B,) z_iy = t_i (0 for rows without a target in the shard).
        inv_norm: (C,) 1/max(‖W_j‖, 1e-12); constant for autograd.
    """

    row_max: torch.Tensor
    sumexp: torch.Tensor
    nontarget_sum: torch.Tensor
    target: torch.Tensor
    inv_norm: torch.Tensor


def cosine_logsumexp_reference(xn, weight, labels, target_logit, target_slope, s, filter_threshold=math.inf):
    """Pure-PyTorch :func:`cosine_logsumexp`: the dense B×C logits, differentiated by autograd."""
    acc = stat_dtype(xn.dtype)
    inv_norm = 1.0 / torch.linalg.vector_norm(weight.to(acc), dim=1).clamp_min(_NORM_EPS)
    cos = (xn.to(acc) @ weight.to(acc).t()) * inv_norm
    z = s * cos
    is_target = torch.zeros_like(z, dtype=torch.bool)
    rows = torch.nonzero(labels >= 0).squeeze(1)
    is_target[rows, labels[rows]] = True
    # The kernels compare the scaled logit (s·cos > s·τ), so does the oracle.
    z = torch.where(z.detach() > s * filter_threshold, 0.0, z)
    nontarget_sum = z.masked_fill(is_target, 0.0).sum(1)
    # The target column: value t_i, derivative target_slope_i with respect to its cosine.
    target_column = target_logit[:, None] + target_slope[:, None] * (cos - cos.detach())
    z = torch.where(is_target, target_column, z)
    target = torch.where(is_target, z, 0.0).sum(1)
    if z.shape[1]:
        row_max = z.detach().amax(1)  # amax: max(dim) also finds indices, ~1000x slower here
    else:
        row_max = z.new_full((z.shape[0],), -math.inf)
    sumexp = torch.exp(z - row_max[:, None]).sum(1)
    return CosineLSE(row_max, sumexp, nontarget_sum, target, inv_norm.detach())


def _backward_fn(backward_op, keeps_dots=False):
    """The autograd of a kernel pair (forward op, ``backward_op``), shared by native and Triton.

    Inputs of the forward op after ``s`` (Triton's ``precision``) are passed on to ``backward_op``.
    With ``keeps_dots`` (native), the forward op's last input is ``keep_dots`` and its sixth output
    the kept dot products, which ``backward_op`` takes after ``row_max`` instead of that flag.
    """

    def setup(ctx, inputs, output):
        xn, weight, labels, target_logit, target_slope, s, *options = inputs
        row_max, inv_norm = output[0], output[4]
        kept = output[5:6] if keeps_dots else ()
        ctx.save_for_backward(xn, weight, labels, target_logit, target_slope, row_max, inv_norm, *kept)
        ctx.s, ctx.options = s, options[:-1] if keeps_dots else options
        ctx.inputs_after_s = len(options)
        ctx.mark_non_differentiable(row_max, inv_norm, *kept)

    def backward(ctx, _g_max, g_sumexp, g_nontarget, g_target, _g_inv, *_g_kept):
        xn, weight, labels, target_logit, target_slope, row_max, inv_norm, *kept = ctx.saved_tensors
        grads = [torch.zeros_like(row_max) if g is None else g.contiguous() for g in (g_sumexp, g_nontarget, g_target)]
        grad_xn, grad_weight = backward_op(*grads, xn, weight, inv_norm, labels, target_logit, target_slope, row_max,
                                           *kept, ctx.s, *ctx.options)
        return grad_xn, grad_weight, None, None, None, None, *(None for _ in range(ctx.inputs_after_s))

    return setup, backward


# The native forward keeps its B·C dot products for the backward (three GEMMs instead of four) when
# they take at most this much memory: 32k classes at B = 512 in float32. Measured on the AMD EPYC,
# B 512, C 10k (bench/README.md "Keeping the dots"): the GEMMs are nine tenths of the time and the
# recomputed one a quarter of them. Above it the op keeps its O(B·512) memory and recomputes.
_KEEP_DOTS_BYTES = 64 << 20


def _keeps_dots(xn, weight) -> bool:
    """Whether the native forward keeps its dot products: a backward will run, and they fit."""
    if not (torch.is_grad_enabled() and (xn.requires_grad or weight.requires_grad)):
        return False
    return xn.shape[0] * weight.shape[0] * stat_dtype(xn.dtype).itemsize <= _KEEP_DOTS_BYTES


def _register_native() -> None:
    setup, backward = _backward_fn(torch.ops.pyfacex.cosine_lse_backward, keeps_dots=True)
    torch.library.register_autograd("pyfacex::cosine_lse", backward, setup_context=setup)

    @torch.library.register_fake("pyfacex::cosine_lse")
    def _(xn, weight, labels, target_logit, target_slope, s, filter_threshold, keep_dots):
        rows = xn.new_empty(xn.shape[0], dtype=target_logit.dtype)
        kept = xn.new_empty(xn.shape[0] * weight.shape[0] if keep_dots else 0, dtype=target_logit.dtype)
        return (rows, torch.empty_like(rows), torch.empty_like(rows), torch.empty_like(rows),
                weight.new_empty(weight.shape[0], dtype=target_logit.dtype), kept)

    @torch.library.register_fake("pyfacex::cosine_lse_backward")
    def _(g_sumexp, g_nontarget, g_target, xn, weight, inv_norm, labels, target_logit, target_slope, row_max, dots, s,
          filter_threshold):
        return xn.new_empty(xn.shape), weight.new_empty(weight.shape)


if native.loaded:
    _register_native()


def _triton_ops():
    from ..triton import margin as triton_margin  # imported on first use: triton is optional

    return triton_margin.ops()


def _check_lse_inputs(xn, weight, labels, *, values: bool = True):
    """Shapes, dtypes and devices of the embeddings, weight and labels; with ``values`` the labels'
    range too (a device sync on CUDA, skipped where :func:`reads_values` says so)."""
    check_tensor(xn, "x", dtypes=FLOAT_DTYPES, dim=2)
    check_tensor(weight, "weight", dtypes=FLOAT_DTYPES, dim=2)
    if weight.shape[1] != xn.shape[1]:
        raise ValueError(f"weight must be (num_classes, dim) with dim = {xn.shape[1]} (x's), got {tuple(weight.shape)}")
    if weight.dtype != xn.dtype:
        raise TypeError(f"weight must have x's dtype {xn.dtype}, got {weight.dtype}")
    check_same_device(weight, "weight", xn, "x")
    check_tensor(labels, "labels", dtypes=(torch.int64,), dim=1)
    if labels.shape[0] != xn.shape[0]:
        raise ValueError(f"labels must have B = {xn.shape[0]} entries (one per row of x), got {labels.shape[0]}")
    check_same_device(labels, "labels", xn, "x")
    if values:
        check_labels(labels, weight.shape[0])


def cosine_logsumexp(xn: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, target_logit: torch.Tensor,
                     target_slope: torch.Tensor, s: float, filter_threshold: float | None = None) -> CosineLSE:
    """Online log-sum-exp statistics of the scaled cosine logits of one class shard (see :class:`CosineLSE`).

    The building block of :func:`margin_cross_entropy` and of :class:`pyfacex.nn.PartialFC`, which
    combines the statistics of every rank's shard; :func:`margin_targets` makes its target inputs.
    Differentiable in ``xn`` and ``weight`` (through its normalisation); ``target_logit`` and
    ``target_slope`` are constants.

    Args:
        xn: (B, d) L2-normalised embeddings.
        weight: (C, d) class weights, not normalised (the op normalises them on the fly), x's dtype.
        labels: (B,) int64 in [−1, C); −1: no target column in this shard.
        target_logit: (B,) target logits t_i = s·φ(cos θ_y), float32 (float64 for float64 x).
        target_slope: (B,) dt_i/dcos θ_y, same dtype.
        s: the logit scale.
        filter_threshold: inter-class filtering (insightface's ``interclass_filtering_threshold``): a
            non-target cosine above it counts as 0, without gradient (a class that looks like the
            sample's own is likelier a mislabelled duplicate than a negative). None: no filtering.
    """
    _check_lse_inputs(xn, weight, labels)
    if filter_threshold is not None and not (isinstance(filter_threshold, numbers.Real)
                                             and -1.0 <= filter_threshold <= 1.0):
        raise ValueError(f"filter_threshold must be None or a cosine in [-1, 1], got {filter_threshold!r}")
    if filter_threshold is not None and not s > 0:  # the kernels compare s·cos with s·threshold
        raise ValueError(f"s must be > 0 with a filter_threshold, got {s}")
    for name, t in (("target_logit", target_logit), ("target_slope", target_slope)):
        check_tensor(t, name, dtypes=(stat_dtype(xn.dtype),), dim=1)
        if t.shape[0] != xn.shape[0]:
            raise ValueError(f"{name} must have B = {xn.shape[0]} entries, got {t.shape[0]}")
        check_same_device(t, name, xn, "x")
    return _cosine_logsumexp(xn, weight, labels, target_logit, target_slope, s, filter_threshold)


def _cosine_logsumexp(xn, weight, labels, target_logit, target_slope, s, filter_threshold=None) -> CosineLSE:
    """:func:`cosine_logsumexp` on arguments already validated."""
    threshold = math.inf if filter_threshold is None else float(filter_threshold)
    args = (xn, weight, labels, target_logit.detach(), target_slope.detach(), float(s), threshold)
    backend = resolve("cosine_logsumexp", _KERNELS, xn.device, xn.dtype)
    if backend == "native":
        return CosineLSE(*torch.ops.pyfacex.cosine_lse(*args, _keeps_dots(xn, weight))[:5])
    if backend == "triton":
        return CosineLSE(*_triton_ops().forward(*args))
    return cosine_logsumexp_reference(*args)


# ---------------------------------------------------------------- the loss

class MarginCrossEntropy(NamedTuple):
    """Result of :func:`margin_cross_entropy` with ``return_details=True``.

    Attributes:
        loss: () mean over the rows that have a target.
        per_sample: (B,) the loss of each row (0 for rows with label −1).
        target_cos: (B,) cos θ_{y_i}, detached (0 for rows with label −1): for logging and for
            quality-aware heads.
    """

    loss: torch.Tensor
    per_sample: torch.Tensor
    target_cos: torch.Tensor


@torch.no_grad()
def target_cosine(xn: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) cos θ_{y_i} = x̂_i·W_{y_i}/‖W_{y_i}‖ in the statistics dtype, 0 where labels == −1 (detached)."""
    acc = stat_dtype(xn.dtype)
    if weight.shape[0] == 0:  # a shard without classes (more ranks than classes)
        return xn.new_zeros(xn.shape[0], dtype=acc)
    w = weight[labels.clamp(min=0)].to(acc)
    cos = (xn.to(acc) * w).sum(1) / torch.linalg.vector_norm(w, dim=1).clamp_min(_NORM_EPS)
    return torch.where(labels >= 0, cos, 0.0)


def margin_targets(xn: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, s: float, m1: float = 1.0,
                   m2: float | torch.Tensor = 0.0, m3: float | torch.Tensor = 0.0, grad: str = "exact"):
    """The target inputs of :func:`cosine_logsumexp`: cos θ_y, t = s·φ(cos θ_y) and dt/dcos θ_y.

    The slope is s·:func:`combined_margin_slope` (``grad="straight_through"``: s).

    Args:
        xn: (B, d) L2-normalised embeddings; weight: (C, d), xn's dtype; labels: (B,) int64 in
            [−1, C) (their range is not read here, so no device sync: :func:`cosine_logsumexp`,
            which the targets feed, checks it); s, m1, m2, m3, grad: as :func:`margin_cross_entropy`.

    Returns:
        cos (B,), target_logit (B,), target_slope (B,), all detached, 0 where labels == −1, in
        float32 (float64 for float64 xn).
    """
    _check_lse_inputs(xn, weight, labels, values=False)
    _check_grad_mode(grad)
    _check_margins(xn.shape[0], "x", xn, m2=m2, m3=m3)
    return _margin_targets(xn, weight, labels, s, m1, m2, m3, grad)


def _margin_targets(xn, weight, labels, s, m1, m2, m3, grad):
    """:func:`margin_targets` on arguments already validated."""
    cos = target_cosine(xn, weight, labels)
    with torch.no_grad():
        target = s * combined_margin(cos, m1, m2, m3, grad)
        slope = s * combined_margin_slope(cos, m1, m2, grad)
    has_target = labels >= 0
    return cos, torch.where(has_target, target, 0.0), torch.where(has_target, slope, 0.0)


def loss_from_partials(lse: CosineLSE, has_target: torch.Tensor, num_classes: int, label_smoothing: float = 0.0,
                       all_reduce_max=None, all_reduce_sum=None) -> torch.Tensor:
    """Per-row cross-entropy from the shard statistics of :func:`cosine_logsumexp`.

    ``has_target`` marks the rows whose target column is in this shard. The result is meaningful
    only for rows that have a target in some shard; the caller masks the others.

    In one process the reducers are identities; :class:`pyfacex.nn.PartialFC` passes all-reduces
    across the ranks that hold the class shards (``all_reduce_sum`` with an identity backward,
    because every rank computes the same loss).

    loss_i = (1 − ε)·(lse_i − z_iy) + ε·(lse_i − Σ_j z_ij / C), as ``F.cross_entropy`` with
    ``label_smoothing=ε``.
    """
    identity = lambda t: t  # noqa: E731
    all_reduce_max = all_reduce_max or identity
    all_reduce_sum = all_reduce_sum or identity
    target = torch.where(has_target, lse.target, 0.0)
    row_max = all_reduce_max(lse.row_max)
    # A shard without columns has max −inf and contributes exp(−inf) = 0.
    lse_total = row_max + torch.log(all_reduce_sum(lse.sumexp * torch.exp(lse.row_max - row_max)))
    if label_smoothing == 0.0:
        return lse_total - all_reduce_sum(target)
    target, total = all_reduce_sum(torch.stack([target, lse.nontarget_sum + target])).unbind()
    return (1 - label_smoothing) * (lse_total - target) + label_smoothing * (lse_total - total / num_classes)


def check_margin_args(x, labels, s, m1, m2, m3, grad, label_smoothing) -> None:
    """Validate the embeddings, labels and margin hyper-parameters of a margin loss (shared by the heads)."""
    check_tensor(x, "x", dtypes=FLOAT_DTYPES, dim=2)
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch (B = 0): the mean loss is undefined")
    check_tensor(labels, "labels", dtypes=(torch.int64, torch.int32, torch.int16, torch.uint8), dim=1)
    if labels.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have B = {x.shape[0]} entries (one per row of x), got {labels.shape[0]}")
    _check_grad_mode(grad)
    if not s > 0:
        raise ValueError(f"s must be > 0, got {s}")
    if not m1 >= 1.0:
        raise ValueError(f"m1 must be >= 1 (a multiplicative angular margin), got {m1}")
    for name, m in (("m2", m2), ("m3", m3)):
        if isinstance(m, torch.Tensor) and m.shape != (x.shape[0],):
            raise ValueError(f"{name} must be a float or a (B,) = ({x.shape[0]},) tensor, got shape {tuple(m.shape)}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    check_finite(x, "x", "diverged embeddings")


def margin_cross_entropy(x: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *, s: float = 64.0,
                         m1: float = 1.0, m2: float | torch.Tensor = 0.5, m3: float | torch.Tensor = 0.0,
                         grad: str = "exact", label_smoothing: float = 0.0, return_details: bool = False):
    """Fused margin softmax cross-entropy: normalise, cosine logits, combined margin, softmax CE.

    Equal to ``F.cross_entropy(margin_logits(F.normalize(x) @ F.normalize(weight).T, labels, ...),
    labels, ignore_index=-1)`` but never materialises the (B, C) logits: memory O(B·tile) besides
    the gradient of ``weight``. On CPU, while a backward will follow, the B·C dot products are kept
    for it when they fit in 64 MiB (float32 values), which saves the backward one GEMM.

    Args:
        x: (B, d) embeddings (not normalised); cast to ``weight``'s dtype (AMP embeddings with
            float32 weights work).
        weight: (C, d) class weights (insightface layout).
        labels: (B,) integer classes in [−1, C); −1 rows are ignored.
        s: logit scale (64).
        m1, m2, m3: the combined margin (defaults: ArcFace m2 = 0.5); m2 and m3 may be (B,)
            tensors (AdaFace, :func:`adaface_margins`).
        grad: ``"exact"`` or ``"straight_through"`` (insightface's current ArcFace).
        label_smoothing: ε in [0, 1), as ``F.cross_entropy``.
        return_details: also return the per-sample loss and target cosine.

    Returns:
        the mean loss () over rows with a target, in x's dtype; with ``return_details`` a
        :class:`MarginCrossEntropy`.
    """
    check_margin_args(x, labels, s, m1, m2, m3, grad, label_smoothing)
    check_tensor(weight, "weight", dtypes=FLOAT_DTYPES, dim=2)
    if weight.shape[0] == 0:
        raise ValueError("weight has no classes (num_classes = 0)")
    labels = labels.long()
    xn = F.normalize(x.to(weight.dtype), dim=1)
    _check_lse_inputs(xn, weight, labels)
    has_target = labels >= 0
    if reads_values(has_target) and not bool(has_target.any()):
        raise ValueError("every label is -1: no row has a target class")
    cos, target_logit, target_slope = _margin_targets(xn, weight, labels, s, m1, m2, m3, grad)
    lse = _cosine_logsumexp(xn, weight, labels, target_logit, target_slope, s)
    per_sample = torch.where(has_target, loss_from_partials(lse, has_target, weight.shape[0], label_smoothing), 0.0)
    loss = (per_sample.sum() / has_target.sum()).to(x.dtype)
    if not return_details:
        return loss
    return MarginCrossEntropy(loss, per_sample.to(x.dtype), cos.to(x.dtype))
