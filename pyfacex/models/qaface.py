"""QAFace: quality-aware injection of a momentum backbone's features into the softmax centres, and VPL.

QAFace (Sec. 3.4, Fig. 3) trains a backbone with ArcFace (eq. 3) whose class centres are
"injected" with a memory M ∈ R^{C×d} of earlier samples of each class: W̃_y = W_y + M_y (eq. 12)
with M_y = f(ẑ)·x/‖x‖ (eq. 7), ẑ = (‖x‖ − μ)/σ (eq. 10) from running norm statistics (eq. 8-9) and
f(ẑ) = exp(−ẑ) if ẑ ≥ −τ else 0 (eq. 11). The memorised x come from a momentum copy of the backbone
(Fig. 3 right, γ = 0.99 as MoCo). VPL (Deng et al. 2021; insightface recognition/vpl), the paper's
baseline, memorises plain x/‖x‖ of the online backbone and mixes W̃ = normalize((1−λ)·Ŵ + λ·M).

Readings (docs/readings.md "QAFace"):

* running = 0.99·running + 0.01·batch for μ and σ (eq. 8-9 taken as the EMA the text describes);
  the statistics are those of the memorised (momentum) features, whose norms eq. 7 weighs.
* A class is injected only if it was written within the last Δt iterations (Sec. 4.3, Tab. 3:
  Δt = 1000), and only from ``start_iteration`` on ("after the fourth epoch").
* Unrecognisable samples (f(ẑ) = 0, ẑ < −τ) write nothing: neither the memory row nor the stamp
  ("samples with ‖x‖ lower than −τ would not affect the centers", QAFace, Sec. 3.4), so they cannot
  erase what an earlier, recognisable sample of their class left.
* Several samples of one class in a batch: the LAST one with f > 0 in batch order is memorised (the
  rule of :func:`pyfacex.ops.memory_write_`, identical on every backend). Writing a mean would mix
  features whose weights f(ẑ) were meant to judge each sample alone.
* ``normalize_weight`` (default off, eq. 12 as written): inject into the normalised centre,
  W̃_y = W_y/‖W_y‖ + M_y. The paper writes W̃ = W + M and normalises only W̃ for the logits, so the
  balance of W and M then depends on ‖W‖, which is set by the initialisation (N(0, 0.01²) rows:
  ‖W‖ ≈ 0.23 at d = 512, against ‖M‖ = f(ẑ) ≈ 1) and shrunk by weight decay. With the switch on,
  ‖Ŵ‖ = 1 and M weighs f(ẑ) against it whatever W's scale, as VPL weighs λ·M against (1 − λ)·Ŵ.
* ``quality_weight`` (default on): f(ẑ) of eq. 11 weighs each memorised sample. Off, f ≡ 1: every
  sample writes x/‖x‖ into W̃ = W + M (the momentum backbone, Δt and start unchanged), the equal
  injection of QAFace's Fig. 1(b): the ablation that isolates the quality function (QAFace, Sec. 3.4-3.5).
* The injection of a step reads the memory as earlier steps left it; this batch is written after
  (a sample's own feature in its own centre would make its target logit trivially easy).
* Writes older than Δt at ``start_iteration`` are never read, so before ``start_iteration − Δt``
  the momentum backbone is not run and nothing is written.
* Distributed: every rank writes the whole global batch (features, labels and f gathered in rank
  order; μ, σ are already global in :class:`pyfacex.nn.NormStats`), so the memories agree across
  ranks and equal a 1-rank run on the concatenated batch.
* The momentum backbone always runs in eval mode: a memorised feature then depends on its image
  only (not on the batch through BatchNorm statistics), dropout does not perturb it, and its
  forward has no side effect. Its buffers (BatchNorm running statistics) are copied from the online
  backbone at every :meth:`QAFace.momentum_update`; its parameters are the EMA.
"""
from __future__ import annotations

import copy
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import CombinedMarginHead, NormStats
from ..ops.margin import margin_cross_entropy
from ..ops.quality import _check_count, memory_inject, memory_write_, qaface_weight
from ._distributed import all_gather_rows
from .registry import register_model

__all__ = ["MemoryInjectionHead", "QAFace", "QAFaceOutput", "qaface_r50", "qaface_r100", "vpl_r100"]

MODES = ("qaface", "vpl")

# "After the fourth epoch" (QAFace Sec. 4.3) of WebFace4M (4 235 242 images) at the paper's
# global batch of 2 × 512: 4 · ⌊4 235 242 / 1024⌋ iterations (the last incomplete batch is dropped,
# as insightface's loader does).
_QAFACE_START = 4 * 4135


class QAFaceOutput(NamedTuple):
    """What :meth:`QAFace.forward` returns with ``return_details=True``.

    loss (): the mean margin loss; per_sample (B,); target_cos (B,) cosine to the injected target
    centre; embeddings (B, d) of the online backbone; quality (B,) f(ẑ) of the memorised features
    (``None`` when nothing was written, in VPL mode or with ``quality_weight=False``); active (C,)
    bool, the classes injected this step (``None`` before ``start_iteration``).
    """

    loss: torch.Tensor
    per_sample: torch.Tensor
    target_cos: torch.Tensor
    embeddings: torch.Tensor
    quality: torch.Tensor | None
    active: torch.Tensor | None


class MemoryInjectionHead(CombinedMarginHead):
    """Margin softmax over class centres injected with a memory of features (QAFace eq. 7-12; VPL).

    Holds the class weights ``weight`` (C, d), the memory ``memory`` (C, d), the iteration of each
    class's last write ``stamps`` (C,) int64 (−1: never) and, in QAFace mode, the norm statistics
    ``norm_stats`` (:class:`pyfacex.nn.NormStats`), all saved by ``state_dict``.

    Args:
        dim: embedding size d.
        num_classes: number of identities C.
        mode: ``"qaface"`` (W̃ = W + M, M = f(ẑ)·x/‖x‖; eq. 7, 12) or ``"vpl"``
            (W̃ = normalize((1−λ)·normalize(W) + λ·M), M = x/‖x‖).
        quality_weight: QAFace mode only: weigh each memorised sample by f(ẑ) (eq. 11); False: f ≡ 1,
            every sample writes x/‖x‖ and no norm statistics are kept (the ablation of eq. 11).
        normalize_weight: QAFace mode only: inject into W/‖W‖ (W̃ = Ŵ + M) so that the balance of W
            and M does not depend on W's scale (module docstring); VPL always normalises W.
        start_iteration: first iteration at which the memory is injected.
        delta_t: staleness window Δt: a class is injected iff iteration − stamp <= Δt.
        tau: τ of eq. 11 (QAFace).
        lam: λ of VPL's mix.
        stats_momentum: weight of the batch in the EMA of μ and σ (eq. 8-9, read as docs/readings.md "QAFace").
        s, m1, m2, m3, grad, label_smoothing: the margin loss, as :class:`pyfacex.nn.CombinedMarginHead`
            (default ArcFace s = 64, m = 0.5, the loss QAFace trains with).
    """

    def __init__(self, dim: int, num_classes: int, *, mode: str = "qaface", start_iteration: int = 0,
                 delta_t: int = 1000, tau: float = 2.0, lam: float = 0.15, stats_momentum: float = 0.01,
                 normalize_weight: bool = False, quality_weight: bool = True, s: float = 64.0, m1: float = 1.0,
                 m2: float = 0.5, m3: float = 0.0, grad: str = "exact", label_smoothing: float = 0.0):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not isinstance(normalize_weight, bool):
            raise TypeError(f"normalize_weight must be a bool, got {normalize_weight!r}")
        if normalize_weight and mode != "qaface":
            raise ValueError(f"normalize_weight applies to mode='qaface' (VPL always normalises W), got mode={mode!r}")
        if not isinstance(quality_weight, bool):
            raise TypeError(f"quality_weight must be a bool, got {quality_weight!r}")
        if not quality_weight and mode != "qaface":
            raise ValueError(f"quality_weight=False applies to mode='qaface' (VPL has no quality weight: every sample "
                             f"writes with f = 1), got mode={mode!r}")
        _check_count(start_iteration, "start_iteration")
        _check_count(delta_t, "delta_t")
        if not tau >= 0:
            raise ValueError(f"tau must be >= 0, got {tau}")
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        super().__init__(dim, num_classes, s=s, m1=m1, m2=m2, m3=m3, grad=grad, label_smoothing=label_smoothing)
        self.mode, self.start_iteration, self.delta_t, self.tau, self.lam = mode, start_iteration, delta_t, tau, lam
        self.normalize_weight, self.quality_weight = normalize_weight, quality_weight
        self.register_buffer("memory", torch.zeros(num_classes, dim))
        self.register_buffer("stamps", torch.full((num_classes,), -1, dtype=torch.int64))
        self.norm_stats = NormStats(momentum=stats_momentum) if mode == "qaface" and quality_weight else None

    def writes(self, iteration: int) -> bool:
        """Whether a training step at ``iteration`` memorises its batch (a write is read only within Δt)."""
        return self.training and iteration + self.delta_t >= self.start_iteration

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, iteration: int,
                memory_features: torch.Tensor | None = None, return_details: bool = False):
        """Loss over the injected centres, then the write of ``memory_features`` (if given).

        Args:
            embeddings: (B, d) online embeddings (not normalised).
            labels: (B,) int64 in [−1, C); −1 rows are ignored by the loss and write nothing.
            iteration: int >= 0, the training iteration.
            memory_features: (B, d) features to memorise (QAFace: the momentum backbone's), or
                ``None`` to write nothing; written only when :meth:`writes` holds.
            return_details: return a :class:`QAFaceOutput` (with ``embeddings`` as given).

        Returns:
            the mean loss (), or a :class:`QAFaceOutput`.
        """
        _check_count(iteration, "iteration")
        weight, active = self.weight, None
        if iteration >= self.start_iteration:
            # Inactive rows stay Ŵ instead of W: the same logits, as the margin loss normalises W̃.
            base = F.normalize(self.weight, dim=1) if self.normalize_weight else self.weight
            weight, active = memory_inject(base, self.memory, self.stamps, iteration, self.delta_t,
                                           vpl=self.mode == "vpl", lam=self.lam)
        result = margin_cross_entropy(embeddings, weight, labels, s=self.s, m1=self.m1, m2=self.m2, m3=self.m3,
                                      grad=self.grad, label_smoothing=self.label_smoothing, return_details=True)
        quality = None
        if memory_features is not None and self.writes(iteration):
            quality = self._write(memory_features, labels, iteration)
        if not return_details:
            return result.loss
        return QAFaceOutput(result.loss, result.per_sample, result.target_cos, embeddings, quality, active)

    @torch.no_grad()
    def _write(self, features: torch.Tensor, labels: torch.Tensor, iteration: int) -> torch.Tensor | None:
        features = features.detach()
        quality = None
        if self.norm_stats is not None:
            # eq. 8-10 (NormStats updates μ, σ with this batch first), then eq. 11.
            quality = qaface_weight(self.norm_stats(features), self.tau)
        scale = features.new_ones(features.shape[0]) if quality is None else quality  # VPL, f ≡ 1: f = 1
        memory_write_(self.memory, self.stamps, *all_gather_rows(features, labels.long(), scale), iteration)  # eq. 7
        return quality

    def extra_repr(self) -> str:
        extra = f"tau={self.tau}, normalize_weight={self.normalize_weight}, quality_weight={self.quality_weight}" \
            if self.mode == "qaface" else f"lam={self.lam}"
        return (f"{super().extra_repr()}, mode={self.mode!r}, start_iteration={self.start_iteration}, "
                f"delta_t={self.delta_t}, {extra}")


class QAFace(nn.Module):
    """A backbone trained with memory injection into its softmax centres: QAFace (Fig. 3) or VPL.

    One training step::

        loss = model(images, labels, iteration)
        loss.backward(); optimizer.step(); optimizer.zero_grad()
        model.momentum_update()                      # θ_m ← γ·θ_m + (1 − γ)·θ (Fig. 3 right)

    Inference uses ``model.backbone`` alone.

    Args:
        backbone: any module mapping images (B, 3, H, W) to embeddings (B, d).
        num_classes: number of identities C.
        embedding_size: d; default ``backbone.num_features`` when the backbone has it.
        momentum: γ of the momentum backbone (0.99, as MoCo), or ``None`` to memorise the online
            backbone's detached features (VPL's original, no momentum copy).
        mode, start_iteration, delta_t, tau, lam, stats_momentum, normalize_weight, quality_weight, s, m1,
            m2, m3, grad, label_smoothing: as :class:`MemoryInjectionHead`.

    State (``state_dict``): ``backbone.*``, ``momentum_backbone.*`` (when ``momentum`` is set),
    ``head.weight``, ``head.memory``, ``head.stamps``, ``head.norm_stats.*`` (QAFace mode with
    ``quality_weight``).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, *, embedding_size: int | None = None,
                 momentum: float | None = 0.99, **head_kwargs):
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be an nn.Module mapping images to (B, d), got {type(backbone).__name__}")
        if embedding_size is None:
            embedding_size = getattr(backbone, "num_features", None)
            if not isinstance(embedding_size, int):
                raise ValueError("embedding_size must be given: the backbone has no int attribute num_features")
        if momentum is not None and not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1) or None, got {momentum}")
        self.backbone = backbone
        self.momentum = momentum
        self.momentum_backbone = None
        if momentum is not None:
            self.momentum_backbone = copy.deepcopy(backbone).requires_grad_(False).eval()
        self.head = MemoryInjectionHead(embedding_size, num_classes, **head_kwargs)

    def train(self, mode: bool = True) -> QAFace:
        super().train(mode)
        if self.momentum_backbone is not None:
            self.momentum_backbone.eval()  # always: see the module docstring
        return self

    @torch.no_grad()
    def momentum_update(self) -> None:
        """θ_m ← γ·θ_m + (1 − γ)·θ for every parameter (QAFace Fig. 3 right); buffers copied.

        Call after each optimiser step. A no-op when ``momentum`` is ``None``.
        """
        if self.momentum_backbone is None:
            return
        for slow, fast in zip(self.momentum_backbone.parameters(), self.backbone.parameters()):
            slow.lerp_(fast.detach(), 1.0 - self.momentum)
        for slow, fast in zip(self.momentum_backbone.buffers(), self.backbone.buffers()):
            slow.copy_(fast)

    def forward(self, images: torch.Tensor, labels: torch.Tensor, iteration: int, return_details: bool = False):
        """The loss of one step; in training mode the batch is then memorised (when :meth:`MemoryInjectionHead.writes`).

        Args:
            images: (B, 3, H, W) as the backbone expects.
            labels: (B,) int64 in [−1, C).
            iteration: int >= 0, the training iteration (drives start and staleness).
            return_details: return a :class:`QAFaceOutput` instead of the loss alone.

        Returns:
            the mean loss (), or a :class:`QAFaceOutput`.
        """
        _check_count(iteration, "iteration")
        embeddings = self.backbone(images)
        memory_features = None
        if self.head.writes(iteration):
            memory_features = embeddings.detach()
            if self.momentum_backbone is not None:
                with torch.no_grad():
                    memory_features = self.momentum_backbone(images)
        return self.head(embeddings, labels, iteration, memory_features, return_details=return_details)


IRESNET_KEYS = ("layers", "widths", "input_size", "dropout", "fp16", "amp_dtype")
"""Keywords of the entry points that go to the default iResNet factory (tiny builds: layers, widths, input_size)."""


def _build(default_backbone: str, *, num_classes: int, embedding_size: int = 512, backbone: nn.Module | None = None,
           **overrides) -> QAFace:
    iresnet_overrides = {k: overrides.pop(k) for k in IRESNET_KEYS if k in overrides}
    if backbone is None:
        from ..backbones import iresnet

        backbone = getattr(iresnet, default_backbone)(num_features=embedding_size, **iresnet_overrides)
    elif iresnet_overrides:
        raise ValueError(f"{sorted(iresnet_overrides)} configure the default iResNet; "
                         "they cannot apply to a given backbone")
    return QAFace(backbone, num_classes, embedding_size=embedding_size, **overrides)


@register_model
def qaface_r50(*, num_classes: int, backbone: nn.Module | None = None, **overrides) -> QAFace:
    """QAFace with an iResNet-50 (QAFace eq. 3 ArcFace s = 64, m = 0.5; eq. 7-12 injection, τ = 2,
    Δt = 1000 from iteration 16 540 (epoch 4 of WebFace4M at batch 1024); momentum backbone γ = 0.99).

    Overrides: ``backbone`` (any module to (B, embedding_size)) or the iResNet's ``layers``, ``widths``,
    ``input_size``, ``dropout``, ``fp16``, ``amp_dtype``; ``embedding_size`` (512); every keyword of
    :class:`QAFace`.
    """
    overrides = {"start_iteration": _QAFACE_START, "delta_t": 1000, **overrides}
    return _build("iresnet50", num_classes=num_classes, backbone=backbone, **overrides)


@register_model
def qaface_r100(*, num_classes: int, backbone: nn.Module | None = None, **overrides) -> QAFace:
    """QAFace with an iResNet-100, the paper's setting (QAFace eq. 3 ArcFace; eq. 7-12 injection,
    τ = 2, Δt = 1000 from iteration 16 540 (epoch 4 of WebFace4M at batch 1024); momentum γ = 0.99).

    Overrides: as :func:`qaface_r50`.
    """
    overrides = {"start_iteration": _QAFACE_START, "delta_t": 1000, **overrides}
    return _build("iresnet100", num_classes=num_classes, backbone=backbone, **overrides)


@register_model
def vpl_r100(*, num_classes: int, backbone: nn.Module | None = None, **overrides) -> QAFace:
    """VPL with an iResNet-100, QAFace's baseline (QAFace Sec. 3.3, eq. 6 with the memory of
    normalised online features; insightface recognition/vpl: W̃ = normalize((1−λ)·Ŵ + λ·M), λ = 0.15,
    Δt = 200, start at iteration 8000; ArcFace s = 64, m = 0.5; no momentum backbone).

    Overrides: as :func:`qaface_r50`.
    """
    overrides = {"mode": "vpl", "lam": 0.15, "delta_t": 200, "start_iteration": 8000, "momentum": None, **overrides}
    return _build("iresnet100", num_classes=num_classes, backbone=backbone, **overrides)
