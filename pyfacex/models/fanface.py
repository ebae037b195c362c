"""FAN-Face: a frozen landmark network (FAN) guiding a face-recognition network (FAN-Face Sec. 3).

A pre-trained FAN, frozen and kept in eval mode, sees the face resized to ``fan_size`` (256) and gives
two things to the FRN, an iResNet:

* heatmap integration (Sec. 3.2, eq. 1): the 51 internal landmark heatmaps (iBUG-68 without the jaw
  line 0-16, Sec. 3.1) of hourglass ``s`` (1-based, "H2" = the 2nd), resampled to the image size and
  stacked with it, I_H ∈ R^{(3+51)×M×M}; "H2+" (Sec. 5 AS1) stacks them also with the FRN features at
  the end of every stage (56, 28, 14, 7 at 112), so the next layer takes C_k + 51 channels;
* feature integration (Sec. 3.3, eq. 2): ỹ_k = y_k + γ_k·f(x_l, y_k), x_l the high-to-low ("h2l") or
  low-to-high ("l2h") feature of one hourglass at the resolution of y_k, interpolated (bilinear) to
  it, f an integration layer (BL, SL or AL, Sec. 3.4, Fig. 3; :mod:`pyfacex.nn.integration`). FAN
  level k (64, 32, 16, 8 at 256) serves FRN stage k (56, 28, 14, 7 at 112): "the only constraint ...
  is that the features combined have similar spatial resolutions". Connectivity "1-1": one point per
  resolution, the end of the stage ("the feature tensor at the end of each stage before
  down-sampling"); "1M": "1 feature tensor from FAN with all feature tensors from FRN for each
  distinct spatial resolution", i.e. the output of every block of the stage (3 + 4 + 6 + 3 = 16 points
  on ResNet-34), each with its own γ_k and layer.

Variants are named as in Tab. 1 and parsed by :func:`parse_variant`: "H2", "H2+", "H2,1-1,BL,h2l-2",
"H2,1M,BL,h2l-2", likewise SL / AL, l2h-k, any hourglass number, and "Multi-task", the AS7 baseline
(Sec. 5): a plain iResNet (no heatmap stacking, no integration) with a heatmap head after layer 4
(:class:`pyfacex.nn.heatmap_head.HeatmapHead`), trained to regress the frozen FAN's heatmaps ("the
ground truth for each face is provided by the FAN network": the 51 internal maps of its last
hourglass, resized to the head's output) by an L2 (mean squared error) loss weighted 0.1 against the
recognition loss. Training on face images without landmark labels, the FAN is the only source of
targets (a distillation target); at test time the model embeds without running the FAN.

Readings and choices where the paper is silent:

* integration layer widths: ``mix_width`` = 4 by default, the reading that meets Sec. 3.5's 40K-110K
  extra parameters; ``mix_width=None`` gives the wide layers of the text read literally (about 1M
  extra parameters with 1-1); see :mod:`pyfacex.nn.integration`;
* images are FRN-normalised, (RGB/255 − 0.5)/0.5; FAN gets (images + 1)/2 = RGB/255 resized to
  ``fan_size`` (bilinear), as face-alignment expects;
* γ_k is learnable per point; ``gamma_init`` defaults to 1 for 1-1 (eq. 2 as written, f fully on
  from the start) and 1/n for 1-M with n blocks in the stage (the stage's points start at the scale of
  one 1-1 contribution);
* with fewer FAN levels than the FRN has stages (tiny test models) stage k takes level min(k, depth).

The loss is ArcFace (:class:`pyfacex.nn.ArcFace`, s = 64, m = 0.5; Sec. 4) when ``num_classes`` > 0.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import iresnet
from ..backbones.fan import FAN, FANOutput
from ..backbones.iresnet import IBasicBlock, IResNet
from ..nn import ArcFace
from ..nn.heatmap_head import HeatmapHead
from ..nn.integration import LAYER_KINDS, PAPER_MIX_WIDTH, StageIntegration
from ._backbone import check_head_labels
from .registry import register_model

__all__ = ["FANFace", "FANFaceConfig", "parse_variant", "INTERNAL_LANDMARKS", "MULTITASK", "fanface_r34_h2",
           "fanface_r34_h2_plus", "fanface_r34_h2_11_bl_h2l2", "fanface_r34_h2_1m_bl_h2l2", "fanface_r34_multitask"]

INTERNAL_LANDMARKS = slice(17, 68)
"""The 51 internal iBUG-68 landmarks (the jaw line 0-16 dropped, FAN-Face Sec. 3.1)."""
NUM_INTERNAL = 51
CONNECTIVITIES = ("1-1", "1M")
SUBNETWORKS = ("h2l", "l2h")
MULTITASK = "Multi-task"
"""The name of the AS7 multi-task baseline in Tab. 1 ("Multi-task(2018)")."""

_HEATMAPS = re.compile(r"^H([1-9]\d*)(\+?)$")
_FEATURES = re.compile(r"^(h2l|l2h)-([1-9]\d*)$")


@dataclass(frozen=True)
class FANFaceConfig:
    """A parsed variant string (FAN-Face Tab. 1).

    Attributes:
        heatmap_stack: hourglass (1-based) whose heatmaps are stacked with the image (Sec. 3.2); None
            for the multi-task baseline, which stacks nothing.
        heatmaps_everywhere: "H…+": the heatmaps are stacked with every FRN stage's output too (AS1).
        connectivity: "1-1", "1M" or None (no feature integration).
        layer: "BL", "SL", "AL" or None.
        subnetwork: "h2l", "l2h" or None.
        feature_stack: hourglass (1-based) the integrated features come from, or None.
        multitask: the AS7 baseline: a heatmap head after layer 4 regressing the FAN's heatmaps.
    """

    heatmap_stack: int | None
    heatmaps_everywhere: bool = False
    connectivity: str | None = None
    layer: str | None = None
    subnetwork: str | None = None
    feature_stack: int | None = None
    multitask: bool = False

    def __post_init__(self):
        if (self.heatmap_stack is None) != self.multitask:
            raise ValueError(f"FANFaceConfig: heatmap_stack must be None exactly for the multi-task baseline, got "
                             f"heatmap_stack={self.heatmap_stack!r} with multitask={self.multitask!r}")

    def __str__(self) -> str:
        if self.multitask:
            return MULTITASK
        name = f"H{self.heatmap_stack}" + ("+" if self.heatmaps_everywhere else "")
        if self.connectivity is None:
            return name
        return f"{name},{self.connectivity},{self.layer},{self.subnetwork}-{self.feature_stack}"


def parse_variant(variant: str) -> FANFaceConfig:
    """Parse a Tab. 1 name: "H<s>[+]", "H<s>[+],<1-1|1M>,<BL|SL|AL>,<h2l|l2h>-<k>" or "Multi-task".

    Spaces around the commas are ignored ("H2, 1-1, BL, h2l-2" as the paper writes it); "1-M" is
    accepted for "1M"; "Multi-task" in any case. Hourglass numbers are 1-based.

    Raises:
        ValueError: naming the string and the part that is wrong.
    """
    if not isinstance(variant, str):
        raise TypeError(f"variant must be a string such as 'H2,1-1,BL,h2l-2', got {type(variant).__name__}")
    if variant.strip().lower() == MULTITASK.lower():
        return FANFaceConfig(None, multitask=True)
    parts = [part.strip() for part in variant.split(",")]
    heatmaps = _HEATMAPS.match(parts[0])
    if heatmaps is None:
        raise ValueError(f"variant {variant!r}: the first part must be H<hourglass>[+] (e.g. 'H2', 'H2+'), "
                         f"got {parts[0]!r}; or the whole name {MULTITASK!r}")
    stack, everywhere = int(heatmaps.group(1)), heatmaps.group(2) == "+"
    if len(parts) == 1:
        return FANFaceConfig(stack, everywhere)
    if len(parts) != 4:
        raise ValueError(f"variant {variant!r}: expected 'H<s>[+]' or 'H<s>[+],<1-1|1M>,<BL|SL|AL>,<h2l|l2h>-<k>' "
                         f"(1 or 4 comma-separated parts), got {len(parts)} parts")
    connectivity = "1M" if parts[1] == "1-M" else parts[1]
    if connectivity not in CONNECTIVITIES:
        raise ValueError(f"variant {variant!r}: connectivity must be one of {CONNECTIVITIES}, got {parts[1]!r}")
    if parts[2] not in LAYER_KINDS:
        raise ValueError(f"variant {variant!r}: integration layer must be one of {LAYER_KINDS}, got {parts[2]!r}")
    features = _FEATURES.match(parts[3])
    if features is None:
        raise ValueError(f"variant {variant!r}: features must be <h2l|l2h>-<hourglass> (e.g. 'h2l-2'), "
                         f"got {parts[3]!r}")
    return FANFaceConfig(stack, everywhere, connectivity, parts[2], features.group(1), int(features.group(2)))


class FANFace(nn.Module):
    """Frozen FAN + iResNet FRN with heatmap stacking and integration layers (FAN-Face Sec. 3, eq. 1-2),
    or the AS7 multi-task baseline (Sec. 5).

    Args:
        variant: a Tab. 1 name (:func:`parse_variant`) or a :class:`FANFaceConfig`.
        frn: the name of a :mod:`pyfacex.backbones.iresnet` factory (built with ``in_channels=54``, or 3
            for "Multi-task") or an :class:`IResNet` with that many input channels. For "H…+" variants
            its layer2-4 first blocks and bn2/fc are widened by 51 channels in place, after which it
            runs inside FANFace only.
        frn_kwargs: keyword arguments of a named FRN factory (``layers``, ``widths``, ``input_size``,
            ``num_features``, ``dropout``, ...).
        embedding_size: shorthand for ``frn_kwargs["num_features"]`` (named FRN only).
        fan: a :class:`FAN` (load face-alignment's weights into it first, e.g. with
            :func:`pyfacex.backbones.fan.truncate_stacks`); None builds ``FAN(**fan_kwargs)`` with
            2 stacks (Sec. 3.1) and random weights. It is frozen: requires_grad False, eval mode kept.
        fan_kwargs: keyword arguments of that FAN (not with a module).
        fan_size: the side FAN sees (256), a multiple of 4·2^depth.
        mix_width: width r of the integration layers (:mod:`pyfacex.nn.integration`): 4, the reading
            of Sec. 3.5's 40K-110K extra parameters; None: the wide layers of the literal text.
        gamma_init: initial γ_k; None: 1 for 1-1, 1/n for 1-M with n blocks in the stage.
        adain: "y" (the paper's text) or "x", see :class:`pyfacex.nn.integration.IntegrationLayer`.
        heatmap_head_channels, heatmap_head_upsamplings: of the multi-task head
            (:class:`pyfacex.nn.heatmap_head.HeatmapHead`, "Multi-task" only).
        heatmap_loss_weight: weight of the heatmap L2 loss against the recognition loss ("Multi-task"
            only; 0.1, "the ratio between the two losses was 0.1", AS7).
        num_classes: identities of the ArcFace head (s, margin); 0: the model only embeds.

    Shapes:
        images (B, 3, H, W) FRN-normalised ((RGB/255 − 0.5)/0.5), H×W = the FRN's ``input_size``;
        labels (B,) int. ``forward`` returns the embedding (B, E), or (loss, embedding) given labels;
        with ``return_heatmap_loss=True`` ("Multi-task" only) (embedding, heatmap L2 loss (,)).
    """

    def __init__(self, variant: str | FANFaceConfig = "H2,1-1,BL,h2l-2", frn: IResNet | str = "iresnet34", *,
                 frn_kwargs: dict | None = None, embedding_size: int | None = None, fan: FAN | None = None,
                 fan_kwargs: dict | None = None, fan_size: int = 256, mix_width: int | None = PAPER_MIX_WIDTH,
                 gamma_init: float | None = None, adain: str = "y", heatmap_head_channels: int = 256,
                 heatmap_head_upsamplings: int = 3, heatmap_loss_weight: float = 0.1, num_classes: int = 0,
                 s: float = 64.0, margin: float = 0.5):
        super().__init__()
        self.config = variant if isinstance(variant, FANFaceConfig) else parse_variant(variant)
        cfg = self.config
        self.fan = _frozen_fan(fan, fan_kwargs)
        self.frn = _build_frn(frn, frn_kwargs, embedding_size, 3 if cfg.multitask else 3 + NUM_INTERNAL)
        if not isinstance(fan_size, int) or fan_size <= 0 or fan_size % (4 * 2 ** self.fan.depth):
            raise ValueError(f"fan_size must be a positive multiple of {4 * 2 ** self.fan.depth} "
                             f"(4·2^depth of the FAN), got {fan_size!r}")
        self.fan_size = fan_size
        for name, stack in (("heatmap", cfg.heatmap_stack), ("feature", cfg.feature_stack)):
            if stack is not None and stack > self.fan.num_stacks:
                raise ValueError(f"variant {str(cfg)!r}: {name} hourglass {stack} does not exist, the FAN has "
                                 f"{self.fan.num_stacks} stacks")
        if cfg.heatmaps_everywhere:
            _widen_for_heatmaps(self.frn, NUM_INTERNAL)
        self.mix_width = mix_width
        self.integration = (None if cfg.connectivity is None
                            else self._build_integration(mix_width, gamma_init, adain))
        self.heatmap_head = None
        if cfg.multitask:
            if not isinstance(heatmap_loss_weight, (int, float)) or not heatmap_loss_weight >= 0:
                raise ValueError(f"heatmap_loss_weight must be a number >= 0, got {heatmap_loss_weight!r}")
            self.heatmap_head = HeatmapHead(self.frn.widths[3], NUM_INTERNAL, heatmap_head_channels,
                                            heatmap_head_upsamplings)
        self.heatmap_loss_weight = float(heatmap_loss_weight)
        self.embedding_size = self.frn.features.num_features
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        self.head = ArcFace(self.embedding_size, num_classes, s=s, m=margin) if num_classes else None

    def _build_integration(self, mix_width, gamma_init, adain_target) -> nn.ModuleList:
        stages = []
        for blocks, width in zip(self.frn.layers, self.frn.widths):
            points = (blocks - 1,) if self.config.connectivity == "1-1" else tuple(range(blocks))
            gamma = 1.0 / len(points) if gamma_init is None else gamma_init
            stages.append(StageIntegration(blocks, points, self.fan.width, width, self.config.layer, adain_target,
                                           mix_width, gamma))
        return nn.ModuleList(stages)

    def fan_levels(self) -> tuple[int, ...]:
        """The FAN feature level (0 = the hourglass's highest resolution) integrated at each FRN stage:
        level k at stage k (64, 32, 16, 8 → 56, 28, 14, 7), min(k, depth) with a shallower FAN."""
        return tuple(min(k, self.fan.depth) for k in range(len(self.frn.widths)))

    def extra_repr(self) -> str:
        return f"variant={str(self.config)!r}, fan_size={self.fan_size}, mix_width={self.mix_width}"

    def train(self, mode: bool = True) -> FANFace:
        """As ``nn.Module.train``, but the FAN stays in eval mode (it is frozen, Sec. 4)."""
        super().train(mode)
        self.fan.eval()
        return self

    def landmark_outputs(self, images: torch.Tensor) -> FANOutput:
        """The frozen FAN on the faces: (images + 1)/2 resized to ``fan_size``; no gradient."""
        fan_input = F.interpolate((images.float() + 1.0) / 2.0, size=(self.fan_size, self.fan_size),
                                  mode="bilinear", align_corners=False)
        with torch.no_grad():
            return self.fan(fan_input, return_features=True)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None, *,
                return_heatmap_loss: bool = False):
        """Embedding (B, E); given labels, (loss, embedding), the loss ArcFace (+ the weighted heatmap
        loss for "Multi-task"); with ``return_heatmap_loss`` ("Multi-task"), (embedding, heatmap loss)."""
        self._check_images(images)
        if return_heatmap_loss and not self.config.multitask:
            raise ValueError(f"return_heatmap_loss applies to the {MULTITASK!r} variant only, this is "
                             f"{str(self.config)!r}")
        if self.config.multitask:
            feature_map = self.frn._stages(images)[-1]
            embedding = self.frn._head(feature_map)
            heatmap_loss = self.heatmap_loss(images, feature_map) if labels is not None or return_heatmap_loss else None
            if return_heatmap_loss:
                return embedding, heatmap_loss
        else:
            embedding, heatmap_loss = self._integrated_embedding(images), None
        if labels is None:
            return embedding
        check_head_labels(self.head, labels, embedding)
        loss = self.head(embedding, labels)
        if heatmap_loss is not None:
            loss = loss + self.heatmap_loss_weight * heatmap_loss  # AS7: ArcFace + 0.1·L2
        return loss, embedding

    def heatmap_loss(self, images: torch.Tensor, feature_map: torch.Tensor) -> torch.Tensor:
        """AS7's L2 loss: mean squared error between the heatmap head's prediction on ``feature_map``
        (layer 4's output, (B, C_4, h, w)) and the frozen FAN's 51 internal heatmaps of its last
        hourglass for ``images``, resized (bilinear) to the prediction's size. Returns a scalar."""
        if self.heatmap_head is None:
            raise ValueError(f"heatmap_loss needs the {MULTITASK!r} variant, this is {str(self.config)!r}")
        prediction = self.heatmap_head(feature_map).float()
        target = self.landmark_outputs(images).heatmaps[-1][:, INTERNAL_LANDMARKS].float()
        return F.mse_loss(prediction, _resize(target, prediction.shape[-2:]))

    def _integrated_embedding(self, images: torch.Tensor) -> torch.Tensor:
        out = self.landmark_outputs(images)
        heatmaps = out.heatmaps[self.config.heatmap_stack - 1][:, INTERNAL_LANDMARKS].to(images.dtype)
        y = self.frn.stem(torch.cat([images, _resize(heatmaps, images.shape[-2:])], dim=1))  # eq. 1
        features = None
        if self.integration is not None:
            split = out.high_to_low if self.config.subnetwork == "h2l" else out.low_to_high
            hourglass = split[self.config.feature_stack - 1]
            features = [hourglass[level].to(images.dtype) for level in self.fan_levels()]
        for k, stage in enumerate(self.frn.stage_modules):
            y = stage(y) if features is None else self.integration[k](stage, features[k], y)  # eq. 2
            if self.config.heatmaps_everywhere:
                y = torch.cat([y, _resize(heatmaps, y.shape[-2:])], dim=1)  # "H+" (Sec. 5 AS1)
        return self.frn._head(y)

    def _check_images(self, images) -> None:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a (B, 3, H, W) tensor, got {got}")
        if not images.is_floating_point():
            raise TypeError(f"images must be floating point (FRN-normalised), got {images.dtype}")
        if tuple(images.shape[2:]) != self.frn.input_size:
            raise ValueError(f"images must be {self.frn.input_size[0]}×{self.frn.input_size[1]} (the FRN's "
                             f"input_size), got {images.shape[2]}×{images.shape[3]}")


def _resize(maps: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)


def _frozen_fan(fan: FAN | None, fan_kwargs: dict | None) -> FAN:
    if fan is None:
        fan = FAN(**{"num_stacks": 2, **(fan_kwargs or {})})
    elif not isinstance(fan, FAN):
        raise TypeError(f"fan must be a pyfacex.backbones.FAN or None, got {type(fan).__name__}")
    elif fan_kwargs:
        raise ValueError(f"fan_kwargs apply when fan is None, got {sorted(fan_kwargs)} with a FAN module")
    if fan.num_landmarks != 68:
        raise ValueError(f"fan must predict the 68 iBUG landmarks (51 internal ones are used), "
                         f"got num_landmarks={fan.num_landmarks}")
    fan.requires_grad_(False)
    return fan.eval()


def _build_frn(frn, frn_kwargs, embedding_size, in_channels: int) -> IResNet:
    if isinstance(frn, str):
        if frn not in iresnet.__all__ or not frn.startswith(("iresnet", "irse")):
            raise ValueError(f"frn must be an IResNet or an iresnet factory name (e.g. 'iresnet34'), got {frn!r}")
        kwargs = {"in_channels": in_channels, **(frn_kwargs or {})}
        if embedding_size is not None:
            kwargs["num_features"] = embedding_size
        frn = getattr(iresnet, frn)(**kwargs)
    elif not isinstance(frn, IResNet):
        raise TypeError(f"frn must be an IResNet or an iresnet factory name, got {type(frn).__name__}")
    elif frn_kwargs or embedding_size is not None:
        raise ValueError("frn_kwargs and embedding_size apply to a named frn only, not to an IResNet module")
    if frn.in_channels != in_channels:
        what = "RGB + 51 heatmaps, eq. 1" if in_channels > 3 else "RGB: the multi-task baseline stacks no heatmaps"
        raise ValueError(f"frn must take {in_channels} input channels ({what}), got in_channels={frn.in_channels}")
    return frn


def _widen_for_heatmaps(frn: IResNet, extra: int) -> None:
    # "H+": the layer after each stage end reads C_k + 51 channels: the first block of the next stage,
    # and after layer4 the head's bn2 and fc.
    for k in (2, 3, 4):
        stage = getattr(frn, f"layer{k}")
        old = stage[0]
        se = None if old.se is None else old.se.fc2.weight.shape[0] // old.se.fc1.weight.shape[0]
        block = IBasicBlock(old.bn1.num_features + extra, old.conv1.out_channels, 2, se)
        for module in block.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.1)  # IResNet's init
        stage[0] = block
    channels = frn.bn2.num_features + extra
    frn.bn2 = nn.BatchNorm2d(channels, eps=frn.bn2.eps)
    h, w = frn.feature_map_size
    frn.fc = nn.Linear(channels * h * w, frn.fc.out_features)


def _fanface(variant: str, overrides: dict) -> FANFace:
    return FANFace(**{"variant": variant, "frn": "iresnet34", **overrides})


@register_model
def fanface_r34_h2(**overrides) -> FANFace:
    """FAN-Face(H2) on iResNet-34 (FAN-Face Tab. 1 AS1): the 51 internal heatmaps of FAN's 2nd
    hourglass stacked with the image (eq. 1); ArcFace when ``num_classes`` is given. Overrides go to
    :class:`FANFace` (``frn_kwargs``, ``fan``, ``fan_size``, ``embedding_size``, ``num_classes``, ...).
    """
    return _fanface("H2", overrides)


@register_model
def fanface_r34_h2_plus(**overrides) -> FANFace:
    """FAN-Face(H2+) on iResNet-34 (Tab. 1 AS1): the H2 heatmaps stacked with the image (eq. 1) and with
    the output of every FRN stage (56, 28, 14, 7 at 112). Overrides go to :class:`FANFace`.
    """
    return _fanface("H2+", overrides)


@register_model
def fanface_r34_h2_11_bl_h2l2(**overrides) -> FANFace:
    """FAN-Face(H2,1-1,BL,h2l-2) on iResNet-34, the paper's best (Tab. 1 AS2, Sec. 6): H2 stacking
    (eq. 1) and, at each stage end, ỹ = y + γ·f(x, y) (eq. 2) with the Basic Layer (Sec. 3.4, Fig. 3)
    on the high-to-low features of hourglass 2, level k → stage k. Overrides go to :class:`FANFace`.
    """
    return _fanface("H2,1-1,BL,h2l-2", overrides)


@register_model
def fanface_r34_h2_1m_bl_h2l2(**overrides) -> FANFace:
    """FAN-Face(H2,1M,BL,h2l-2) on iResNet-34 (Tab. 1 AS4): as H2,1-1,BL,h2l-2 but FAN level k feeds the
    output of every block of FRN stage k, ŷ_k = y_k + γ_k·f(x_l, y_k) at 3 + 4 + 6 + 3 = 16 points, each
    with its own layer and γ_k (Sec. 3.3). Overrides go to :class:`FANFace`.
    """
    return _fanface("H2,1M,BL,h2l-2", overrides)


@register_model
def fanface_r34_multitask(**overrides) -> FANFace:
    """The multi-task baseline of FAN-Face Tab. 1 (AS7): iResNet-34 with a heatmap head after layer 4,
    trained with ArcFace + 0.1 × the L2 loss to the frozen FAN's heatmaps; it embeds without the FAN.
    Overrides go to :class:`FANFace` (``heatmap_loss_weight``, ``heatmap_head_channels``, ...).
    """
    return _fanface(MULTITASK, overrides)
