"""Softmax classification heads: ``loss = head(embeddings, labels)``.

All heads hold the class weights in ``.weight`` with insightface's layout (num_classes, dim),
initialised N(0, 0.01) as insightface's PartialFC. The margin heads compute their loss with the fused
:func:`pyfacex.ops.margin_cross_entropy` (no (B, C) logits are materialised); :class:`SoftmaxHead`
is the plain softmax (a biased linear layer + cross-entropy) the margin heads improve upon.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops._checks import FLOAT_DTYPES, check_finite, check_labels, check_tensor
from ..ops.margin import adaface_margins, margin_cross_entropy
from .norm_stats import NormStats

__all__ = ["CombinedMarginHead", "ArcFace", "CosFace", "SphereFace", "AdaFaceHead", "SoftmaxHead"]


def class_weight(num_classes: int, dim: int) -> nn.Parameter:
    """A (num_classes, dim) class-weight parameter initialised N(0, 0.01) (insightface PartialFC)."""
    if num_classes < 0 or dim <= 0:
        raise ValueError(f"need num_classes >= 0 and dim > 0, got num_classes={num_classes}, dim={dim}")
    return nn.Parameter(torch.normal(0.0, 0.01, (num_classes, dim)))


class CombinedMarginHead(nn.Module):
    """Softmax cross-entropy with the combined margin s·(cos(m1·θ + m2) − m3) on the target logit.

    Args:
        dim: embedding size d.
        num_classes: number of identities C.
        s: logit scale.
        m1, m2, m3: multiplicative angular (SphereFace), additive angular (ArcFace), additive
            cosine (CosFace) margins.
        grad: ``"exact"`` gradient of the margin, or ``"straight_through"`` (insightface
            arcface_torch's current ArcFace); see :mod:`pyfacex.ops.margin`.
        label_smoothing: ε of the target distribution, as ``F.cross_entropy``.

    Shapes:
        embeddings (B, d), any float dtype (cast to the weight's); labels (B,) int in [−1, C),
        −1 rows ignored. Returns the mean loss (), or with ``return_details=True`` a
        :class:`pyfacex.ops.MarginCrossEntropy` (loss, per-sample loss (B,), target cosine (B,)).
    """

    def __init__(self, dim: int, num_classes: int, s: float = 64.0, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0,
                 grad: str = "exact", label_smoothing: float = 0.0):
        super().__init__()
        self.weight = class_weight(num_classes, dim)
        self.s, self.m1, self.m2, self.m3 = s, m1, m2, m3
        self.grad, self.label_smoothing = grad, label_smoothing

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, return_details: bool = False):
        return margin_cross_entropy(embeddings, self.weight, labels, s=self.s, m1=self.m1, m2=self.m2, m3=self.m3,
                                    grad=self.grad, label_smoothing=self.label_smoothing, return_details=return_details)

    def extra_repr(self) -> str:
        dims = f"dim={self.weight.shape[1]}, num_classes={self.weight.shape[0]}"
        return f"{dims}, s={self.s}, m1={self.m1}, m2={self.m2}, m3={self.m3}, grad={self.grad!r}"


class ArcFace(CombinedMarginHead):
    """ArcFace: target logit s·cos(θ + m) (Deng et al. 2019; insightface margin (1, m, 0))."""

    def __init__(self, dim: int, num_classes: int, s: float = 64.0, m: float = 0.5, **kwargs):
        super().__init__(dim, num_classes, s=s, m2=m, **kwargs)


class CosFace(CombinedMarginHead):
    """CosFace: target logit s·(cos θ − m) (Wang et al. 2018; insightface margin (1, 0, m))."""

    def __init__(self, dim: int, num_classes: int, s: float = 64.0, m: float = 0.4, **kwargs):
        super().__init__(dim, num_classes, s=s, m3=m, **kwargs)


class SphereFace(CombinedMarginHead):
    """SphereFace on normalised features: target logit s·cos(m·θ) (Liu et al. 2017; margin (m, 0, 0)).

    m = 1.35 is the setting the ArcFace paper compares under the combined-margin framework; the
    original SphereFace (m = 4 on unnormalised features with annealing) is a different loss.
    """

    def __init__(self, dim: int, num_classes: int, s: float = 64.0, m: float = 1.35, **kwargs):
        super().__init__(dim, num_classes, s=s, m1=m, **kwargs)


class AdaFaceHead(nn.Module):
    """AdaFace: a per-sample margin from the feature norm (Kim et al. 2022).

    ẑ = clip(h·(‖x‖ − μ)/(σ + eps), −1, 1) with μ, σ the running statistics of the (clipped to
    [0.001, 100], detached) norms in :class:`NormStats` (momentum ``t_alpha``, updated with the batch
    before use, as AdaFace does); target logit s·(cos(θ − m·ẑ) − (m·ẑ + m)).

    Departures from the official code, which are rounding-level: the angle is clamped to [0, π]
    (AdaFace: [1e-3, π − 1e-3]) and non-target cosines are not clamped.

    Args:
        dim, num_classes, s: as :class:`CombinedMarginHead`.
        m: the margin (0.4).
        h: concentration of the standardised norm (0.333).
        t_alpha: momentum of the norm statistics (0.01).
        grad, label_smoothing: as :class:`CombinedMarginHead`.

    Shapes:
        embeddings (B, d) NOT normalised (their norms are the quality signal); labels (B,).
    """

    def __init__(self, dim: int, num_classes: int, s: float = 64.0, m: float = 0.4, h: float = 0.333,
                 t_alpha: float = 0.01, grad: str = "exact", label_smoothing: float = 0.0):
        super().__init__()
        self.weight = class_weight(num_classes, dim)
        self.norm_stats = NormStats(momentum=t_alpha, eps=1e-3)
        self.s, self.m, self.h = s, m, h
        self.grad, self.label_smoothing = grad, label_smoothing

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, return_details: bool = False):
        if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
            raise ValueError(f"embeddings must be a (B, d) tensor, "
                             f"got {getattr(embeddings, 'shape', type(embeddings))}")
        norms = torch.linalg.vector_norm(embeddings.detach().float(), dim=1).clamp(0.001, 100.0)
        self.norm_stats(norms)  # updates the statistics in training mode
        m2, m3 = adaface_margins(norms, self.norm_stats.stats(), self.m, self.h)
        return margin_cross_entropy(embeddings, self.weight, labels, s=self.s, m1=1.0, m2=m2, m3=m3, grad=self.grad,
                                    label_smoothing=self.label_smoothing, return_details=return_details)

    def extra_repr(self) -> str:
        return f"dim={self.weight.shape[1]}, num_classes={self.weight.shape[0]}, s={self.s}, m={self.m}, h={self.h}"


class SoftmaxHead(nn.Module):
    """Plain softmax cross-entropy: logits W·x + b of the unnormalised embeddings, no scale, no margin.

    The literal reading of LFENet's "we simply use the softmax function to compute cross-entropy loss
    for all samples within the set" (LFENet, Sec. IV-B), and the "standard softmax" of FAN-Face's
    ablation AS5 (FAN-Face, Sec. 5, Tab. 1). Unlike the margin heads it materialises the (B, C) logits.

    Args:
        dim: embedding size d.
        num_classes: number of identities C.
        label_smoothing: ε of the target distribution, as ``F.cross_entropy``.

    Shapes:
        embeddings (B, d), any float dtype (cast to the weight's); labels (B,) int in [−1, C), −1 rows
        ignored (as the margin heads). ``weight`` (C, d) N(0, 0.01), ``bias`` (C,) zeros. Returns the
        mean loss () over the rows with a label, in the embeddings' dtype.
    """

    def __init__(self, dim: int, num_classes: int, label_smoothing: float = 0.0):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.weight = class_weight(num_classes, dim)
        self.bias = nn.Parameter(torch.zeros(num_classes))
        self.label_smoothing = label_smoothing

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_tensor(embeddings, "embeddings", dtypes=FLOAT_DTYPES, dim=2)
        num_classes, dim = self.weight.shape
        if embeddings.shape[1] != dim:
            raise ValueError(f"embeddings must be (B, {dim}) (the head's dim), got {tuple(embeddings.shape)}")
        check_tensor(labels, "labels", dtypes=(torch.int64, torch.int32, torch.int16, torch.uint8), dim=1)
        if labels.shape[0] != embeddings.shape[0]:
            raise ValueError(f"labels must have B = {embeddings.shape[0]} entries (one per embedding), "
                             f"got {labels.shape[0]}")
        labels = labels.long()
        check_labels(labels, num_classes)
        if not torch.compiler.is_compiling() and not bool((labels >= 0).any()):
            raise ValueError("every label is -1 (or the batch is empty): no row has a target class")
        check_finite(embeddings, "embeddings", "diverged embeddings")
        logits = F.linear(embeddings.to(self.weight.dtype), self.weight, self.bias)
        return F.cross_entropy(logits, labels, ignore_index=-1,
                               label_smoothing=self.label_smoothing).to(embeddings.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.weight.shape[1]}, num_classes={self.weight.shape[0]}, label_smoothing={self.label_smoothing}"
