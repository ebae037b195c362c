"""The Face Aggregation Network: a set of faces -> one face -> one feature.

A permutation-invariant U-Net (:class:`~pyfacex.backbones.aggregator.FaceAggregator`) aggregates
each set {I_1, ..., I_N} into one image A (eq. 1); a frozen feature extractor F (an ArcFace
ResNet-50 in the paper, Sec. 3.1.3) gives f_A, which represents the whole set; a discriminator
(Sec. 3.1.2) makes A look like a real face. The generator is trained with eq. 5:

    L_G = λ_dis·L_dis + λ_rec·L_rec + λ_adv·L_adv^G + λ_tv·L_tv      (λ_dis = λ_adv = 1, λ_rec = 0.5, λ_tv = 1e-4)

and the discriminator with L_adv^D (eq. 12), alternately (Sec. 4.1).

Readings (docs/readings.md "Face Aggregation Network", and choices where the paper is silent):

* L_dis (eq. 6-7) takes β = 32 on squared distances, a scale of unnormalised ArcFace features: raw
  features by default, L2-normalised ones with ``normalize_features=True``. α (eq. 7) is a target
  from the frozen extractor's features of the inputs: it carries no gradient.
* L_rec^cen (eq. 9) uses eq. 10 with its sign corrected: c_j <- (1-r)·c_j + r/(N+1)·[f_P + Σ_n f_In],
  r = 0.5. A centre is first set to that mean when its identity is seen for the first time (an EMA
  from zero would halve it); then each set updates its centre in batch order (two sets of one
  identity in a batch update it twice). The centres move before the loss reads them, so a loss
  never compares with an unset centre. Updates happen in training mode (``update_centers``).
* Adversarial losses (eq. 11-12) are the non-saturating GAN written on logits:
  -log D(A) = softplus(-logit_A), -log(1 - D(A)) = softplus(logit_A).
* L_tv (eq. 13) is a sum over rows, columns and channels of each aggregated image.
* Every term is averaged over the b sets of the batch.
* The extractor runs in eval mode (BatchNorm statistics and dropout frozen) with no parameter
  gradient; gradients flow through it to A only.
* Images are in the extractor's input normalisation (insightface: (x/255 - 0.5)/0.5); A is
  unbounded (the aggregator's last conv has no activation), the losses keep it face-like.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.aggregator import Discriminator, FaceAggregator
from ..ops._checks import FLOAT_DTYPES, check_offsets, check_tensor
from ._distributed import all_gather_rows
from .registry import register_model

__all__ = ["FaceAggregation", "GeneratorLosses", "DiscriminatorLosses", "discriminative_loss", "total_variation",
           "faceagg_unet"]

RECONSTRUCTIONS = ("center", "average")


class GeneratorLosses(NamedTuple):
    """What :meth:`FaceAggregation.generator_loss` returns.

    loss (): L_G of eq. 5; dis, rec, adv, tv (): the unweighted terms L_dis (eq. 6), L_rec (eq. 8 or 9),
    L_adv^G (eq. 11), L_tv (eq. 13), each averaged over the sets; aggregated (b, 3, H, W): the images A,
    to pass on to :meth:`FaceAggregation.discriminator_loss`.
    """

    loss: torch.Tensor
    dis: torch.Tensor
    rec: torch.Tensor
    adv: torch.Tensor
    tv: torch.Tensor
    aggregated: torch.Tensor


class DiscriminatorLosses(NamedTuple):
    """What :meth:`FaceAggregation.discriminator_loss` returns: loss () = fake + real (eq. 12), with
    fake = mean -log(1 - D(A)) and real = mean -log D(P)."""

    loss: torch.Tensor
    fake: torch.Tensor
    real: torch.Tensor


class FaceAggregation(nn.Module):
    """Aggregator + discriminator + frozen feature extractor, and the losses of Sec. 3.2.

    Args:
        aggregator: maps (images (N, 3, H, W), offsets (b+1,)) to (b, 3, H, W), e.g. FaceAggregator.
        discriminator: maps (b, 3, H, W) to (b,) logits, e.g. Discriminator.
        extractor: any module mapping (B, 3, H, W) images to (B, d) features; frozen here.
        reconstruction: "center" (eq. 9-10, the paper's choice) or "average" (eq. 8).
        num_classes, embedding_size: the identities and d of the centres (``"center"`` only).
        center_rate: r of eq. 10 (0.5).
        beta: the margin β of eq. 6 (32, on squared distances).
        normalize_features: L2-normalise the features of L_dis (default: raw, see the module notes).
        lambda_dis, lambda_rec, lambda_adv, lambda_tv: the weights of eq. 5.

    Buffers (``"center"``): ``centers`` (num_classes, d) and ``center_seen`` (num_classes,) bool.
    """

    def __init__(self, aggregator: nn.Module, discriminator: nn.Module, extractor: nn.Module, *,
                 reconstruction: str = "center", num_classes: int | None = None,
                 embedding_size: int | None = None, center_rate: float = 0.5, beta: float = 32.0,
                 normalize_features: bool = False, lambda_dis: float = 1.0, lambda_rec: float = 0.5,
                 lambda_adv: float = 1.0, lambda_tv: float = 1e-4):
        super().__init__()
        for name, module in (("aggregator", aggregator), ("discriminator", discriminator), ("extractor", extractor)):
            if not isinstance(module, nn.Module):
                raise TypeError(f"{name} must be an nn.Module, got {type(module).__name__}")
        if reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {reconstruction!r}")
        if not 0.0 < center_rate <= 1.0:
            raise ValueError(f"center_rate must be in (0, 1], got {center_rate!r}")
        self.aggregator, self.discriminator, self.extractor = aggregator, discriminator, extractor
        self.extractor.requires_grad_(False)
        self.extractor.eval()
        self.reconstruction, self.center_rate, self.beta = reconstruction, center_rate, beta
        self.normalize_features = normalize_features
        self.lambda_dis, self.lambda_rec = lambda_dis, lambda_rec
        self.lambda_adv, self.lambda_tv = lambda_adv, lambda_tv
        if reconstruction == "center":
            for name, value in (("num_classes", num_classes), ("embedding_size", embedding_size)):
                if not (isinstance(value, int) and value > 0):
                    raise ValueError(f"{name} must be a positive int for reconstruction='center', got {value!r}")
            self.register_buffer("centers", torch.zeros(num_classes, embedding_size))
            self.register_buffer("center_seen", torch.zeros(num_classes, dtype=torch.bool))

    def train(self, mode: bool = True) -> FaceAggregation:
        """Set training mode of the aggregator and discriminator; the extractor stays in eval mode."""
        super().train(mode)
        self.extractor.eval()
        return self

    def aggregate(self, images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """A for each set (eq. 1): images (N, 3, H, W), offsets (b+1,) int64 -> (b, 3, H, W)."""
        return self.aggregator(images, offsets)

    forward = aggregate

    def embed(self, images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """f_A = F(A), the feature representing each set (Fig. 1): (N, 3, H, W), (b+1,) -> (b, d)."""
        return self.extractor(self.aggregate(images, offsets))

    set_representation = embed
    """The set function evaluation runs (the name LFENet's is called by): f_A of each set (Sec. 4.2)."""

    def generator_loss(self, images: torch.Tensor, offsets: torch.Tensor, positives: torch.Tensor,
                       negatives: torch.Tensor, labels: torch.Tensor | None = None, *,
                       update_centers: bool | None = None) -> GeneratorLosses:
        """L_G of eq. 5 and its terms for b sets.

        Args:
            images: (N, 3, H, W) the sets' frames I_n, packed; offsets: (b+1,) int64, non-empty sets.
            positives: (b, 3, H, W) P, a face of each set's identity from another video.
            negatives: (b, 3, H, W) N, a face of another identity.
            labels: (b,) int64 identities in [0, num_classes), needed by ``reconstruction="center"``.
            update_centers: move the centres by eq. 10 first (default: in training mode).

        The discriminator's parameters receive gradients of L_adv^G too: zero them before its step.
        """
        b = self._check_batch(images, offsets, positives, negatives)
        if self.reconstruction == "center":
            self._check_labels(labels, b)
        aggregated = self.aggregate(images, offsets)
        f_a = self.extractor(aggregated)
        with torch.no_grad():
            f_p, f_n, f_i = self.extractor(torch.cat([positives, negatives, images])).split(
                [b, b, images.shape[0]])
        dis = discriminative_loss(f_a, f_p, f_n, f_i, offsets, beta=self.beta,
                                  normalize=self.normalize_features).mean()
        if self.reconstruction == "center":
            if self.training if update_centers is None else update_centers:
                self._update_centers(labels, f_p, f_i, offsets)
            target = self.centers[labels]  # eq. 9
        else:
            target = _set_means(f_i, offsets)  # eq. 8
        rec = (f_a - target).pow(2).sum(1).mean()
        adv = F.softplus(-self.discriminator(aggregated)).mean()  # eq. 11
        tv = total_variation(aggregated).mean()
        loss = self.lambda_dis * dis + self.lambda_rec * rec + self.lambda_adv * adv + self.lambda_tv * tv
        return GeneratorLosses(loss, dis, rec, adv, tv, aggregated)

    def discriminator_loss(self, aggregated: torch.Tensor, positives: torch.Tensor) -> DiscriminatorLosses:
        """L_adv^D of eq. 12 = -log(1 - D(A)) - log D(P), averaged over the sets.

        Args:
            aggregated: (b, 3, H, W) A (detached here: this step trains the discriminator only).
            positives: (b, 3, H, W) real faces P.
        """
        check_tensor(aggregated, "aggregated", dtypes=FLOAT_DTYPES, dim=4)
        check_tensor(positives, "positives", dtypes=FLOAT_DTYPES, dim=4)
        fake = F.softplus(self.discriminator(aggregated.detach())).mean()
        real = F.softplus(-self.discriminator(positives)).mean()
        return DiscriminatorLosses(fake + real, fake, real)

    @torch.no_grad()
    def _update_centers(self, labels: torch.Tensor, f_p: torch.Tensor, f_i: torch.Tensor,
                        offsets: torch.Tensor) -> None:
        """Eq. 10 (sign corrected), set by set in batch order; a first visit sets the centre to the mean.

        Distributed: the sets of every rank are applied, in rank order, on every rank (their means
        and labels all-gathered), so the centres stay equal across ranks.
        """
        if f_p.shape[1] != self.centers.shape[1]:
            raise ValueError(f"the extractor gives {f_p.shape[1]}-d features but the centres are "
                             f"{self.centers.shape[1]}-d (embedding_size)")
        sizes = offsets.diff()
        sums = f_p.new_zeros(f_p.shape).index_add_(0, _set_index(offsets), f_i) + f_p
        means, labels = all_gather_rows(sums / (sizes + 1).unsqueeze(1).to(sums.dtype), labels)
        for label, mean in zip(labels.tolist(), means):
            rate = self.center_rate if bool(self.center_seen[label]) else 1.0
            self.centers[label].mul_(1.0 - rate).add_(mean.to(self.centers.dtype), alpha=rate)
            self.center_seen[label] = True

    def _check_batch(self, images, offsets, positives, negatives) -> int:
        check_tensor(images, "images", dtypes=FLOAT_DTYPES, dim=4)
        check_offsets(offsets, images, allow_empty_sets=False)
        b = offsets.numel() - 1
        if b == 0:
            raise ValueError("offsets must describe at least one set (a loss over no set is undefined), got [0]")
        expected = (b, *images.shape[1:])
        for name, value in (("positives", positives), ("negatives", negatives)):
            check_tensor(value, name, dtypes=FLOAT_DTYPES, dim=4)
            if tuple(value.shape) != expected:
                raise ValueError(f"{name} must have shape {expected} (one image per set), got {tuple(value.shape)}")
        return b

    def _check_labels(self, labels, b: int) -> None:
        if labels is None:
            raise ValueError("labels (b,) identities are required by reconstruction='center'")
        check_tensor(labels, "labels", dtypes=(torch.int64,), dim=1)
        if labels.shape[0] != b:
            raise ValueError(f"labels must have one identity per set, {b}, got shape {tuple(labels.shape)}")
        if not (0 <= int(labels.min()) and int(labels.max()) < self.centers.shape[0]):
            raise ValueError(f"labels must be in [0, num_classes = {self.centers.shape[0]}), "
                             f"got values in [{int(labels.min())}, {int(labels.max())}]")


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """L_tv of eq. 13 per image: squared differences of horizontal and vertical neighbours, summed over
    rows, columns and channels. (b, C, H, W) -> (b,)."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).pow(2).sum((1, 2, 3))
    dy = (images[..., 1:, :] - images[..., :-1, :]).pow(2).sum((1, 2, 3))
    return dx + dy


def discriminative_loss(f_a: torch.Tensor, f_p: torch.Tensor, f_n: torch.Tensor, f_inputs: torch.Tensor,
                        offsets: torch.Tensor, *, beta: float = 32.0, normalize: bool = False) -> torch.Tensor:
    """L_dis of eq. 6-7 per set: (‖f_A − f_P‖² − α)_+ + (β − ‖f_A − f_N‖²)_+ with α = min_n ‖f_In − f_P‖².

    Args:
        f_a, f_p, f_n: (b, d) features of the aggregated, positive and negative images.
        f_inputs: (N, d) features of the input frames, packed by ``offsets`` (b+1,), non-empty sets.
        beta: the margin β on squared distances (32 suits raw ArcFace features, docs/readings.md "Face
            Aggregation Network", "Scale of the margin β (eq. 6)").
        normalize: L2-normalise all features first.

    Returns:
        (b,) the loss of each set. α carries no gradient (it is a target from the inputs).
    """
    check_offsets(offsets, f_inputs, allow_empty_sets=False)
    if normalize:
        f_a, f_p, f_n, f_inputs = (F.normalize(f, dim=1) for f in (f_a, f_p, f_n, f_inputs))
    set_index = _set_index(offsets)
    to_positive = (f_inputs - f_p[set_index]).pow(2).sum(1).detach()
    alpha = to_positive.new_full((f_a.shape[0],), float("inf")).scatter_reduce(0, set_index, to_positive, "amin")
    return F.relu((f_a - f_p).pow(2).sum(1) - alpha) + F.relu(beta - (f_a - f_n).pow(2).sum(1))


def _set_index(offsets: torch.Tensor) -> torch.Tensor:
    """(N,) the set of each packed member."""
    sizes = offsets.diff()
    return torch.repeat_interleave(torch.arange(sizes.numel(), device=offsets.device), sizes)


def _set_means(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(b, d) the mean over each set's members of x (N, d)."""
    sizes = offsets.diff()
    sums = x.new_zeros((sizes.numel(), *x.shape[1:])).index_add_(0, _set_index(offsets), x)
    return sums / sizes.unsqueeze(1).to(x.dtype)


@register_model
def faceagg_unet(*, num_classes: int | None = None, extractor: nn.Module | None = None,
                 widths=(32, 64, 128, 256, 512), discriminator_widths=(64, 128, 256, 256), input_size: int = 112,
                 embedding_size: int = 512, **overrides) -> FaceAggregation:
    """Face Aggregation Network: permutation-invariant U-Net with global
    concatenation (eq. 1, 4), discriminator (Sec. 3.1.2), frozen extractor; L_G of eq. 5 with L_dis
    (eq. 6-7, β = 32), L_rec^cen (eq. 9-10, r = 0.5; eq. 8 with ``reconstruction="average"``),
    L_adv (eq. 11-12), L_tv (eq. 13); λ_dis = λ_adv = 1, λ_rec = 0.5, λ_tv = 1e-4.

    Overrides: ``num_classes`` (identities of the centres; required by the default "center"),
    ``extractor`` (any module (B, 3, H, W) -> (B, embedding_size); default an iResNet-50, the paper's
    ArcFace ResNet-50, to be loaded with pretrained weights), ``widths`` (5, the aggregator's),
    ``discriminator_widths`` (4), ``input_size`` (112; a multiple of 16), ``embedding_size`` (512), and
    every keyword of :class:`FaceAggregation`.
    """
    if extractor is None:
        from ..backbones.iresnet import iresnet50  # the full-size default only: tiny builds pass their own

        extractor = iresnet50(num_features=embedding_size, input_size=input_size)
    return FaceAggregation(FaceAggregator(widths), Discriminator(discriminator_widths, input_size), extractor,
                           num_classes=num_classes, embedding_size=embedding_size, **overrides)
