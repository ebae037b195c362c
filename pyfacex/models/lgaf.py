"""LGAF: Local and Global Feature Attention Fusion network (LGAF Sec. 3).

An iResNet gives the feature map C(x) (Sec. 3). Two branches read it:

* GFE (global): the backbone's own head bn2 → flatten → dropout → fc → features, the "projection
  implemented with a fully connected layer" G(C(x));
* MHMS (local): b MSNet heads (Sec. 3.3). Each runs scales Φ_j (j stacked 3×3 convs, equivalent
  kernels 3, 5, 7), a LANet spatial attention per scale (eq. 11-12), SE channel attention over the
  concatenated scales and a projection F to E/b (eq. 13); the heads are concatenated (eq. 14).

LGF (Sec. 3.2) weighs them by the quality of each feature: Ẑ = clip(h·(Z − μ)/σ, −1, 1) + 1 (eq. 6)
with μ, σ running statistics of the batch (eq. 7-8, α = 0.01), γʲ = Ẑʲ / (Ẑˡ + Ẑᵍ) (eq. 9) and
κ = γˡ·local + γᵍ·global (eq. 10), which the margin head normalises.

Readings (docs/readings.md "LGAF"): local = MHMS output, global = GFE output (the paper swaps Υ and Ψ between
Sec. 3 and eq. 4-5); γˡ weighs the MHMS feature. LANet is two 1×1 convs C → C/r → 1 with ReLU and a
sigmoid giving an h×w map that multiplies its input (eq. 11 literally applies them to GAP(ω), which
would leave no spatial map). Norms are detached when they weigh the fusion; both Ẑ = 0 gives equal
weights. Defaults: ArcFace m = 0.5 (CosFace m = 0.4), s = 64.

Ablations (Tab. 1, 3, 4): ``branches="mhms_only"`` (Method I), ``"gfe_only"`` (Method II = plain
ArcFace), ``quality="none"`` (Method III, Tab. 3 "Baseline": κ = local + global, no LGF),
``quality="entropy"`` (Tab. 3), ``fusion="cat"`` (Tab. 4 CAT: κ = [γˡ·local, γᵍ·global], 2E wide),
``fusion="iaff"`` (Tab. 4 iAFF: κ = iAFF(γˡ·local, γᵍ·global), E wide).

Reading of Tab. 4's "adapted iAFF" (Sec. 4.2.3): the three rows compare fusion modes *in the LGF
module*, so LGF's quality weights stay and iAFF (Dai et al., "Attentional Feature Fusion", WACV 2021)
replaces only the final sum: it fuses the γ-weighted features. Adapted to 512-d vectors, iAFF's
MS-CAMs lose their spatial extent (global pooling of a 1×1 map is the identity), leaving two bottleneck
MLPs per attention (:mod:`pyfacex.nn.attentional_fusion`). ``quality="none"`` with ``fusion="iaff"``
gives the other reading, iAFF on the raw features with no quality weights.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from ..backbones.iresnet import SqueezeExcitation
from ..nn import NormStats, create_head
from ..nn.attentional_fusion import IterativeAttentionalFusion
from ..ops.quality import lgaf_fusion, lgaf_quality
from ._backbone import build_backbone, check_head_labels
from .registry import register_model

__all__ = ["LANet", "MSNet", "MHMS", "LocalGlobalFusion", "LGAF", "LGAFOutput", "lgaf_r50", "lgaf_r100"]

BRANCHES = ("both", "mhms_only", "gfe_only")
QUALITIES = ("energy", "entropy", "none")
FUSIONS = ("add", "cat", "iaff")
LOSSES = ("arcface", "cosface")  # Sec. 4.1.3: registered head kinds (pyfacex.nn.list_heads())


def _positive_int(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _choice(value, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


class LANet(nn.Module):
    """Spatial attention of LS-CNN as LGAF's P(·): ω · σ(conv₂(ReLU(conv₁(ω)))) (eq. 11, read as
    docs/readings.md "LGAF", "LANet is a spatial attention").

    conv₁: 1×1, C → max(1, C // reduction); conv₂: 1×1 → 1 channel; the sigmoid map (B, 1, h, w)
    multiplies every channel of ω at its position.

    Shapes: (B, C, h, w) → (B, C, h, w); :meth:`attention` gives the map (B, 1, h, w).
    """

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        hidden = max(1, _positive_int(channels, "channels") // _positive_int(reduction, "reduction"))
        self.conv1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.conv2 = nn.Conv2d(hidden, 1, kernel_size=1)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The spatial attention map σ(conv₂(ReLU(conv₁(x)))), (B, 1, h, w) in (0, 1)."""
        return torch.sigmoid(self.conv2(torch.relu(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


def _scale(in_channels: int, channels: int, depth: int) -> nn.Sequential:
    # Φ_j(ω) = W_j·ω (eq. 12) is linear: `depth` stacked 3×3 convs (+ BN, affine at test time) with
    # no activation between them are one conv of kernel 2·depth + 1, factorised.
    layers = []
    for index in range(depth):
        layers += [nn.Conv2d(in_channels if index == 0 else channels, channels, 3, padding=1, bias=False),
                   nn.BatchNorm2d(channels)]
    return nn.Sequential(*layers)


class MSNet(nn.Module):
    """One MHMS head: L = F(S(Ω(P(Φ_1(C)), …, P(Φ_J(C))))) (LGAF eq. 11-13).

    Φ_j: ``scales[j]`` stacked 3×3 convs + BN (equivalent kernel 2·scales[j] + 1; default 1, 2, 3 →
    3, 5, 7), each to ``branch_channels``; P: a :class:`LANet` per scale; Ω: channel concatenation;
    S: squeeze-excitation over the J·branch_channels channels (:class:`pyfacex.backbones.iresnet.
    SqueezeExcitation`); F: BN2d → flatten → Linear → BN1d to ``out_features``, the iResNet head's
    form, so the local feature's norm lives on the global one's scale.

    Args:
        in_channels: channels C of C(x).
        feature_map_size: (h, w) of C(x) (7×7 for 112×112 images), which sizes F.
        out_features: E/b.
        scales: stacked convs per scale (the number of scales is not given by the paper).
        branch_channels: channels of each scale (the paper gives none); default C // 4.
        lanet_reduction, se_reduction: reduction ratios r of LANet and SE.

    Shapes: (B, C, h, w) → (B, out_features).
    """

    def __init__(self, in_channels: int, feature_map_size: tuple[int, int], out_features: int,
                 scales: Sequence[int] = (1, 2, 3), branch_channels: int | None = None,
                 lanet_reduction: int = 8, se_reduction: int = 16):
        super().__init__()
        _positive_int(in_channels, "in_channels")
        branch_channels = max(1, in_channels // 4) if branch_channels is None else branch_channels
        _positive_int(branch_channels, "branch_channels")
        scales = tuple(scales)
        if not scales or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in scales):
            raise ValueError(f"scales must be a non-empty sequence of positive ints (stacked 3×3 convs), "
                             f"got {scales!r}")
        h, w = feature_map_size
        self.scales = nn.ModuleList(_scale(in_channels, branch_channels, depth) for depth in scales)
        self.lanets = nn.ModuleList(LANet(branch_channels, lanet_reduction) for _ in scales)
        width = branch_channels * len(scales)
        self.se = SqueezeExcitation(width, _positive_int(se_reduction, "se_reduction"))
        self.project = nn.Sequential(nn.BatchNorm2d(width), nn.Flatten(),
                                     nn.Linear(width * h * w, _positive_int(out_features, "out_features")),
                                     nn.BatchNorm1d(out_features))

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        local_maps = [lanet(scale(feature_map)) for scale, lanet in zip(self.scales, self.lanets)]  # eq. 12
        return self.project(self.se(torch.cat(local_maps, dim=1)))  # eq. 13


class MHMS(nn.Module):
    """Multi-Head Multi-Scale local features Ψ = Ω(L¹, …, L^b) (LGAF eq. 14): b :class:`MSNet` s.

    Args:
        in_channels, feature_map_size: of C(x).
        embedding_size: E; each head gives E / heads (E must be divisible by ``heads``).
        heads: b (4, Tab. 2).
        **msnet: ``scales``, ``branch_channels``, ``lanet_reduction``, ``se_reduction`` of every head.

    Shapes: (B, C, h, w) → (B, E), head k in columns [k·E/b, (k+1)·E/b).
    """

    def __init__(self, in_channels: int, feature_map_size: tuple[int, int], embedding_size: int, heads: int = 4,
                 **msnet):
        super().__init__()
        _positive_int(heads, "heads")
        if embedding_size % heads:
            raise ValueError(f"embedding_size {embedding_size} must be divisible by heads = {heads} "
                             "(each MSNet head projects to embedding_size / heads, eq. 14)")
        self.heads = nn.ModuleList(MSNet(in_channels, feature_map_size, embedding_size // heads, **msnet)
                                   for _ in range(heads))

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(feature_map) for head in self.heads], dim=1)


def gaussian_entropy(features: torch.Tensor) -> torch.Tensor:
    """Differential entropy ½·log(2πe·σ²) of each row taken as Gaussian samples, σ its (unbiased)
    std: TransFace's estimate of a token's information, the "entropy" quality of LGAF Tab. 3.

    Shapes: (B, d) → (B,) float32, detached.
    """
    std = features.detach().float().std(dim=1).clamp_min(1e-12)
    return std.log() + 0.5 * (1.0 + math.log(2.0 * math.pi))


class LocalGlobalFusion(nn.Module):
    """LGF (LGAF eq. 6-10): κ from the local (MHMS) and global (GFE) features, weighed by quality.

    ``quality="energy"`` (the paper's): Z = ‖feature‖ (eq. 4-5) → ``pyfacex.ops.lgaf_fusion``;
    ``"entropy"`` (Tab. 3): Z = :func:`gaussian_entropy`; ``"none"`` (Tab. 3 Baseline = Tab. 1
    Method III): no weights, κ = local + global. Z of each branch is standardised by its own
    :class:`pyfacex.nn.NormStats` (``local_stats``, ``global_stats``: EMA with ``momentum`` α, eq.
    7-8, updated in training mode before use), then Ẑ = clip(h·ẑ, −1, 1) + 1 (eq. 6), γ (eq. 9).
    ``fusion="add"``: κ = γˡ·local + γᵍ·global (eq. 10); ``"cat"`` (Tab. 4): κ = [γˡ·local, γᵍ·global];
    ``"iaff"`` (Tab. 4): κ = iAFF(γˡ·local, γᵍ·global) (:class:`pyfacex.nn.attentional_fusion.
    IterativeAttentionalFusion`, ``channels`` = E, bottleneck ratio ``iaff_reduction``; module
    docstring for the reading).

    Shapes: local, global_ (B, E) float32 → (kappa (B, E) or (B, 2E), gamma (B, 2) = [γˡ, γᵍ] or
    None for ``"none"``). γ is detached: gradients reach both features through κ only.
    """

    def __init__(self, quality: str = "energy", fusion: str = "add", h: float = 0.333, momentum: float = 0.01,
                 channels: int | None = None, iaff_reduction: int = 4):
        super().__init__()
        self.quality = _choice(quality, "quality", QUALITIES)
        self.fusion = _choice(fusion, "fusion", FUSIONS)
        if not h > 0:
            raise ValueError(f"h must be > 0, got {h!r}")
        self.h = h
        if quality != "none":
            self.local_stats = NormStats(momentum=momentum)
            self.global_stats = NormStats(momentum=momentum)
        if fusion == "iaff":
            if channels is None:
                raise ValueError('fusion="iaff" needs channels (E, the width of both features)')
            self.iaff = IterativeAttentionalFusion(channels, iaff_reduction)

    def extra_repr(self) -> str:
        return f"quality={self.quality!r}, fusion={self.fusion!r}, h={self.h}"

    def forward(self, local: torch.Tensor, global_: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.quality == "none":
            return self._combine(local, global_, None), None
        if self.quality == "energy" and self.fusion == "add":
            return self._energy(local, global_)
        gamma = self.weights(local, global_)
        return self._combine(local, global_, gamma), gamma

    def weights(self, local: torch.Tensor, global_: torch.Tensor) -> torch.Tensor:
        """γ = [γˡ, γᵍ] (B, 2) of eq. 6-9, rows summing to 1 (updates the statistics in training mode)."""
        if self.quality == "none":
            raise ValueError('quality="none" has no fusion weights (Method III adds the features)')
        if self.quality == "energy":
            return self._energy(local, global_)[1]
        q_local = lgaf_quality(self.local_stats(gaussian_entropy(local)), self.h)  # eq. 6
        q_global = lgaf_quality(self.global_stats(gaussian_entropy(global_)), self.h)
        total = q_local + q_global
        both_zero = ~(total > 0)  # eq. 9 is 0/0 there: equal weights, as lgaf_fusion
        w_local = torch.where(both_zero, 0.5, q_local / total.clamp_min(1e-12))  # eq. 9
        return torch.stack([w_local, 1.0 - w_local], dim=1).to(local.dtype)

    def _energy(self, local, global_):
        self.local_stats(local)  # eq. 7-8 on the norms (eq. 4-5)
        self.global_stats(global_)
        stats = torch.cat([self.local_stats.stats(), self.global_stats.stats()])
        return lgaf_fusion(local, global_, stats, self.h)  # eq. 6, 9, 10

    def _combine(self, local, global_, gamma):
        if gamma is not None:
            local, global_ = gamma[:, :1] * local, gamma[:, 1:] * global_
        if self.fusion == "iaff":
            return self.iaff(local, global_)
        return local + global_ if self.fusion == "add" else torch.cat([local, global_], dim=1)


class LGAFOutput(NamedTuple):
    """:meth:`LGAF.forward` with ``return_details=True``.

    loss (), or None without labels; embedding κ (B, E) ((B, 2E) for ``fusion="cat"``); local (B, E)
    MHMS feature or None (``gfe_only``); global_ (B, E) GFE feature or None (``mhms_only``); gamma
    (B, 2) = [γˡ, γᵍ] or None (single branch, ``quality="none"``).
    """

    loss: torch.Tensor | None
    embedding: torch.Tensor
    local: torch.Tensor | None
    global_: torch.Tensor | None
    gamma: torch.Tensor | None


class LGAF(nn.Module):
    """C(x) → GFE + MHMS → LGF → κ, trained with a margin head (LGAF Sec. 3, eq. 4-14, Fig. 2).

    The backbone's parameters keep insightface's names under ``backbone.`` (load an arcface_torch
    checkpoint with ``model.backbone.load_state_dict(ckpt)``). The MHMS runs in float32 on C(x), as
    the iResNet head does with ``fp16``. With ``branches="mhms_only"`` the backbone's head (bn2, fc,
    features) gets no gradient (DDP needs ``find_unused_parameters=True``).

    Args:
        backbone: an iResNet-like module with ``forward(x, return_feature_map=True)`` (C(x) before
            bn2), ``head(feature_map)`` (GFE), ``bn2``, ``features`` and ``feature_map_size`` (which
            give C, E and (h, w)), as :class:`pyfacex.backbones.iresnet.IResNet`; or the name of a
            :mod:`pyfacex.backbones.iresnet` factory (``"iresnet100"``, ...).
        backbone_kwargs: keyword arguments of a named backbone's factory (``num_features``,
            ``dropout``, ``fp16``, ``layers``, ``widths``, ``input_size``, ...); not with a module.
        branches: ``"both"`` (LGAF), ``"mhms_only"`` (Tab. 1 Method I), ``"gfe_only"`` (Method II).
        quality, fusion, h, momentum, iaff_reduction: of :class:`LocalGlobalFusion` (``"both"`` only).
        heads: b of :class:`MHMS`; ``scales``, ``branch_channels``, ``lanet_reduction``,
            ``se_reduction``: of each :class:`MSNet`.
        num_classes: identities of the margin head; 0 (and no ``head``): the model only embeds.
        loss: ``"arcface"`` or ``"cosface"`` (Sec. 4.1.3); ``margin`` (None: 0.5 ArcFace, 0.4
            CosFace, docs/readings.md "LGAF", "Margin of the ArcFace head") and ``s`` (64) of that head.
        head: a loss module ``head(embeddings, labels)`` instead (e.g. :class:`pyfacex.nn.PartialFC`).

    Shapes:
        images (B, 3, H, W) (``backbone.input_size``, 112×112 for the paper); labels (B,) int.
        ``forward`` returns κ (B, E') (E' = 2E for ``fusion="cat"``, else E), (loss, κ) given labels,
        or an :class:`LGAFOutput` with ``return_details=True``.
    """

    def __init__(self, backbone: nn.Module | str = "iresnet100", *, backbone_kwargs: dict | None = None,
                 branches: str = "both", quality: str = "energy", fusion: str = "add", h: float = 0.333,
                 momentum: float = 0.01, heads: int = 4, scales: Sequence[int] = (1, 2, 3),
                 branch_channels: int | None = None, lanet_reduction: int = 8, se_reduction: int = 16,
                 num_classes: int = 0, loss: str = "arcface", margin: float | None = None, s: float = 64.0,
                 head: nn.Module | None = None, iaff_reduction: int = 4):
        super().__init__()
        self.backbone = build_backbone(backbone, backbone_kwargs, "LGAF's GFE")
        self.branches = _choice(branches, "branches", BRANCHES)
        channels, base = self.backbone.bn2.num_features, self.backbone.features.num_features
        self.mhms = None if branches == "gfe_only" else MHMS(
            channels, _feature_map_size(self.backbone), base, heads, scales=scales, branch_channels=branch_channels,
            lanet_reduction=lanet_reduction, se_reduction=se_reduction)
        self.lgf = LocalGlobalFusion(quality, fusion, h, momentum, base, iaff_reduction) if branches == "both" else None
        self.embedding_size = 2 * base if self.lgf is not None and fusion == "cat" else base
        self.head = _build_head(head, num_classes, loss, margin, s, self.embedding_size)

    def extra_repr(self) -> str:
        return f"branches={self.branches!r}, embedding_size={self.embedding_size}"

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None, return_details: bool = False):
        """κ (B, E'); given labels, (loss, κ); with ``return_details``, an :class:`LGAFOutput`."""
        feature_map = self.backbone(images, return_feature_map=True)  # C(x), Sec. 3
        global_ = None if self.branches == "mhms_only" else self.backbone.head(feature_map)  # Υ = G(C(x))
        local = None if self.mhms is None else self.mhms(feature_map.float())  # Ψ, eq. 14
        gamma = None
        if self.lgf is not None:
            kappa, gamma = self.lgf(local, global_)  # eq. 6-10
        else:
            kappa = global_ if local is None else local
        loss = None
        if labels is not None:
            check_head_labels(self.head, labels, kappa)
            loss = self.head(kappa, labels)
        if return_details:
            return LGAFOutput(loss, kappa, local, global_, gamma)
        return kappa if loss is None else (loss, kappa)


def _feature_map_size(backbone: nn.Module) -> tuple[int, int]:
    size = getattr(backbone, "feature_map_size", None)
    if size is None:
        raise TypeError(f"backbone must tell the (h, w) of C(x) in feature_map_size (it sizes MSNet's projection); "
                        f"{type(backbone).__name__} has none")
    return tuple(size)


def _build_head(head, num_classes, loss, margin, s, dim):
    if not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
    if head is not None:
        if num_classes:
            raise ValueError(f"give either head or num_classes (for the {loss} head), got both "
                             f"(head={type(head).__name__}, num_classes={num_classes})")
        return head
    params = {"s": s} if margin is None else {"s": s, "margin": margin}  # None: the kind's default margin
    return create_head(_choice(loss, "loss", LOSSES), dim, num_classes, **params) if num_classes else None


@register_model
def lgaf_r50(**overrides) -> LGAF:
    """LGAF on iResNet-50 (LGAF Sec. 3): GFE + MHMS (b = 4 MSNets, eq. 11-14) fused by LGF (energy
    quality, eq. 4-10, h = 0.333, α = 0.01), ArcFace m = 0.5, s = 64 when ``num_classes`` is given.
    Ablations through ``branches``, ``quality``, ``fusion`` (Tab. 1, 3, 4).
    """
    return LGAF(**{"backbone": "iresnet50", **overrides})


@register_model
def lgaf_r100(**overrides) -> LGAF:
    """LGAF on iResNet-100, the paper's setting (LGAF Sec. 3-4): GFE + MHMS (b = 4, eq. 11-14)
    fused by LGF (eq. 4-10, h = 0.333, α = 0.01), ArcFace m = 0.5 or CosFace m = 0.4 (``loss=``), s = 64.
    """
    return LGAF(**{"backbone": "iresnet100", **overrides})
