"""LFENet: Local Feature Enhancement Network for set-based face recognition (LFENet Sec. III).

A truncated backbone gives each image's feature map C(x) (Sec. III-B); the Local Information
Transfer lets every local feature of a set attend to all T·h·w local features of its set (eq. 1-5);
the backbone's own BN-Dropout-FC-BN head compresses each refined map to an image embedding
(Sec. III-D). Training supervises every image embedding; testing represents a set by the mean of its
embeddings, F_s = (1/T)·Σ f'_i, with sets of more than θ images split into segments (Sec. III-B).
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn import ArcFace, LocalInformationTransfer
from ..ops._checks import check_offsets
from ._backbone import BACKBONES, build_backbone, check_head_labels
from .registry import register_model

__all__ = ["BACKBONES", "LFENet", "set_mean", "lfenet_irse50", "lfenet_r34", "lfenet_r50", "lfenet_r100"]



class LFENet(nn.Module):
    """Backbone feature maps → LIT within each set → BN-Dropout-FC-BN → image embeddings (Sec. III).

    The readings of docs/readings.md "LFENet": Q, K, V are 1×1 projections (q, k to ``qk_dim`` = d/2 by default);
    SoftmaxB without 1/√d (``scale`` = 1); the compression is the backbone's own iResNet head
    (``backbone.head``: bn2, flatten, dropout, fc, features, as ArcFace), so its fc sees the whole
    flattened map and a pretrained head is reused; the classification loss (ArcFace by default; the
    paper's "we simply use the softmax function" (Sec. IV-B) is :class:`pyfacex.nn.SoftmaxHead`,
    which the recipes train) is applied to every image embedding, not to the set mean (Sec. III-D).
    θ segmentation applies in eval mode only, as the paper uses it at test time (``model.eval()``
    sets ``lit.segment = θ``, ``model.train()`` clears it). The LIT starts as the identity (V = 0),
    so at initialisation LFENet computes its backbone's embeddings exactly: a pretrained backbone is
    fine-tuned from where it stands; Q and K learn only once V has left zero, so the LIT trains at
    the paper's higher rate (Sec. IV-B; ``optim.lr_scales``). With θ, a set of more than θ images is
    order-dependent (its segments are consecutive runs); up to θ images it is permutation invariant.

    Args:
        backbone: an iResNet-like module (:class:`pyfacex.backbones.iresnet.IResNet`):
            ``forward(x, return_feature_map=True)`` gives C(x) (B, d, h, w) before ``bn2``,
            ``head(C)`` the BN-Dropout-FC-BN embedding, ``bn2``/``features`` give d and E; or a
            name in :data:`BACKBONES` (``"irse50"`` is the paper's SENet-50 role).
        backbone_kwargs: keyword arguments of a named backbone's factory (e.g. ``dropout``,
            ``fp16``, ``num_features``, or a tiny ``layers``/``widths``/``input_size``); not
            allowed with a module.
        num_classes: identities of the default ArcFace head; 0 (and no ``head``): no head, the
            model only embeds.
        head: a loss module called as ``head(embeddings, labels)`` (e.g. :class:`pyfacex.nn.CosFace`,
            :class:`pyfacex.nn.PartialFC`) instead of the default ArcFace (s = 64, m = 0.5).
        relation: ``"softmax_b"`` (eq. 3, the paper's main), ``"softmax_a"`` (eq. 2) or
            ``"scaled_dot"`` (eq. 4).
        segment: θ of the test-time segmentation (12 as Sec. IV-B); None: whole sets.
        qk_dim, scale: of the :class:`pyfacex.nn.LocalInformationTransfer`.

    Shapes:
        images (B, 3, H, W) packed by set; offsets (b+1,) int64 image offsets of the b sets;
        labels (B,) int (one label per image; every image of a set carries the set's label).
        ``forward`` returns embeddings (B, E), or (loss (), embeddings (B, E)) given labels;
        :meth:`set_representation` returns (b, E).
    """

    def __init__(self, backbone: nn.Module | str = "irse50", *, backbone_kwargs: dict | None = None,
                 num_classes: int = 0, head: nn.Module | None = None, relation: str = "softmax_b",
                 segment: int | None = 12, qk_dim: int | None = None, scale: float = 1.0):
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if head is not None and num_classes:
            raise ValueError(f"give either head or num_classes (for the default ArcFace), got both "
                             f"(head={type(head).__name__}, num_classes={num_classes})")
        self.backbone = build_backbone(backbone, backbone_kwargs, "LFENet's compression")
        dim = self.backbone.bn2.num_features
        self.embedding_size = self.backbone.features.num_features
        self.lit = LocalInformationTransfer(dim, qk_dim=qk_dim, relation=relation, scale=scale, segment=None)
        self.segment = segment
        self.head = ArcFace(self.embedding_size, num_classes) if num_classes else head

    @property
    def segment(self) -> int | None:
        """θ of the test-time segmentation; set it at any time, it applies whenever the model is in eval mode."""
        return self._segment

    @segment.setter
    def segment(self, value: int | None) -> None:
        if value is not None and (not isinstance(value, int) or value <= 0):
            raise ValueError(f"segment must be None or an int θ > 0 (images per segment), got {value!r}")
        self._segment = value
        self.lit.segment = None if self.training else value

    def train(self, mode: bool = True) -> LFENet:
        """Switch mode; θ segmentation is on in eval mode only (Sec. III-B: "during testing")."""
        super().train(mode)
        self.segment = self._segment
        return self

    def embed(self, images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Image embeddings f' of a packed batch of sets: (B, 3, H, W), (b+1,) -> (B, E)."""
        feature_map = self.backbone(images, return_feature_map=True)
        refined = self.lit(feature_map, offsets)  # eq. 5, within each set (or segment in eval mode)
        return self.backbone.head(refined)  # BN-Dropout-FC-BN (Sec. III-D)

    def forward(self, images: torch.Tensor, offsets: torch.Tensor, labels: torch.Tensor | None = None):
        """Embeddings (B, E); given labels (B,), (loss, embeddings) with the loss on every image."""
        embeddings = self.embed(images, offsets)
        if labels is None:
            return embeddings
        check_head_labels(self.head, labels, embeddings)
        return self.head(embeddings, labels), embeddings

    def set_representation(self, images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """F_s = (1/T)·Σ_i f'_i of every set (Sec. III-D): (B, 3, H, W), (b+1,) -> (b, E).

        Call in eval mode for the paper's test setting (θ segmentation, BN running statistics).
        The mean is of the raw embeddings, as the paper; normalise it for cosine scoring.
        Raises ValueError on an empty set (its mean is undefined).
        """
        return set_mean(self.embed(images, offsets), offsets)


def set_mean(embeddings: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Mean of each set's rows: (B, E), (b+1,) int64 offsets -> (b, E); no sets give (0, E).

    Raises ValueError on an empty set (its mean is undefined).
    """
    bounds = check_offsets(offsets, embeddings)
    empty = [] if bounds is None else [i for i, (start, end) in enumerate(zip(bounds, bounds[1:])) if start == end]
    if empty:
        i = empty[0]
        raise ValueError(f"set {i} is empty (offsets[{i}] = offsets[{i + 1}] = {bounds[i]}); its mean is undefined")
    sizes = offsets[1:] - offsets[:-1]
    set_ids = torch.repeat_interleave(torch.arange(len(sizes), device=embeddings.device), sizes)
    sums = embeddings.new_zeros(len(sizes), embeddings.shape[1]).index_add_(0, set_ids, embeddings)
    return sums / sizes.to(embeddings.dtype)[:, None]


@register_model
def lfenet_irse50(**overrides) -> LFENet:
    """LFENet on IR-SE-50 (the paper's SENet-50 role, its best; LFENet Sec. III, eq. 1-5).

    SoftmaxB LIT (eq. 3) with the residual of eq. 5, BN-Dropout-FC-BN compression, ArcFace on every
    image embedding when ``num_classes`` is given, set = mean of embeddings with θ = 12.
    """
    return LFENet(**{"backbone": "irse50", **overrides})


@register_model
def lfenet_r34(**overrides) -> LFENet:
    """LFENet on iResNet-34, the paper's ResNet-34 role (LFENet, Sec. III, eq. 1-5; Sec. IV-B: the
    backbone trained from scratch on VGGFace2, then LFENet fine-tuned at 0.001, the LIT at 0.05)."""
    return LFENet(**{"backbone": "iresnet34", **overrides})


@register_model
def lfenet_r50(**overrides) -> LFENet:
    """LFENet on iResNet-50 (LFENet Sec. III, eq. 1-5; LIT relation eq. 3 by default)."""
    return LFENet(**{"backbone": "iresnet50", **overrides})


@register_model
def lfenet_r100(**overrides) -> LFENet:
    """LFENet on iResNet-100 (LFENet Sec. III, eq. 1-5; LIT relation eq. 3 by default)."""
    return LFENet(**{"backbone": "iresnet100", **overrides})
