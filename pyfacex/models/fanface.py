"""FAN-Face: a frozen landmark network (FAN) guiding a face-recognition network (fanface.md Sec. 3).

A pre-trained FAN, frozen and kept in eval mode, sees the face resized to ``fan_size`` (256, NOTES.md)
and gives two things to the FRN, an iResNet:

* heatmap integration (Sec. 3.2, eq. 1): the 51 internal landmark heatmaps (iBUG-68 without the jaw
  line 0-16) of hourglass ``s`` (1-based, "H2" = the 2nd), resampled to the image size and stacked with
  it, I_H ∈ R^{(3+51)×M×M}; "H2+" (Sec. 5 AS1) stacks them also with the FRN features at the end of
  every stage (56, 28, 14, 7 at 112), so the next layer takes C_k + 51 channels;
* feature integration (Sec. 3.3, eq. 2): at the end of every FRN stage, ỹ_k = y_k + γ_k·f(x_l, y_k)
  with x_l the high-to-low ("h2l") or low-to-high ("l2h") feature of one hourglass, interpolated
  (bilinear) to y_k's size, and f an :class:`IntegrationLayer` (BL, SL or AL, Sec. 3.4, Fig. 3).
  Connectivity "1-1": FAN level k (64, 32, 16, 8 at 256) → FRN stage k (56, 28, 14, 7); "1M": every one
  of those FAN levels → every FRN stage, summed with one learnable γ per (level, stage) pair.

Variants are named as in Tab. 1 and parsed by :func:`parse_variant`: "H2", "H2+", "H2,1-1,BL,h2l-2",
"H2,1M,BL,h2l-2", and likewise SL / AL, l2h-k, any hourglass number.

Readings and choices (NOTES.md, and where the paper is silent):

* images are FRN-normalised, (RGB/255 − 0.5)/0.5; FAN gets (images + 1)/2 = RGB/255 resized to
  ``fan_size`` (bilinear), as face-alignment expects;
* AdaIN follows the text (b) and NOTES.md: y_k takes the per-channel (instance) mean and std of the
  aligned x_l, AdaIN(y, x) = σ(x)·(y − μ(y))/σ(y) + μ(x); ``adain="x"`` restyles x with y's instead;
* γ is learnable per integration point and source; its initial value ``gamma_init`` defaults to 1
  for 1-1 (eq. 2 as written, f fully on from the start) and 1/L for 1-M with L sources per stage (the
  sum of the L contributions starts at the scale of one 1-1 contribution);
* SL keeps the final PReLU: f = PReLU(x' + AdaIN(y, x')); AL's bottleneck is 2C → C/4 (1×1) → C/4
  (3×3) → C (1×1), with BN + PReLU between, BN at the end, then the PReLU;
* with fewer FAN levels than the FRN has stages (tiny test models) 1-1 takes level min(k, depth).

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
from .registry import register_model

__all__ = ["FANFace", "FANFaceConfig", "IntegrationLayer", "StageIntegration", "adain", "parse_variant",
           "INTERNAL_LANDMARKS", "fanface_r34_h2", "fanface_r34_h2_plus", "fanface_r34_h2_11_bl_h2l2",
           "fanface_r34_h2_1m_bl_h2l2"]

INTERNAL_LANDMARKS = slice(17, 68)
"""The 51 internal iBUG-68 landmarks (the jaw line 0-16 dropped, fanface.md Sec. 3.1, NOTES.md)."""
NUM_INTERNAL = 51
LAYER_KINDS = ("BL", "SL", "AL")
CONNECTIVITIES = ("1-1", "1M")
SUBNETWORKS = ("h2l", "l2h")

_HEATMAPS = re.compile(r"^H([1-9]\d*)(\+?)$")
_FEATURES = re.compile(r"^(h2l|l2h)-([1-9]\d*)$")


@dataclass(frozen=True)
class FANFaceConfig:
    """A parsed variant string (fanface.md Tab. 1).

    Attributes:
        heatmap_stack: hourglass (1-based) whose heatmaps are stacked with the image (Sec. 3.2).
        heatmaps_everywhere: "H…+": the heatmaps are stacked with every FRN stage's output too (AS1).
        connectivity: "1-1", "1M" or None (no feature integration).
        layer: "BL", "SL", "AL" or None.
        subnetwork: "h2l", "l2h" or None.
        feature_stack: hourglass (1-based) the integrated features come from, or None.
    """

    heatmap_stack: int
    heatmaps_everywhere: bool = False
    connectivity: str | None = None
    layer: str | None = None
    subnetwork: str | None = None
    feature_stack: int | None = None

    def __str__(self) -> str:
        name = f"H{self.heatmap_stack}" + ("+" if self.heatmaps_everywhere else "")
        if self.connectivity is None:
            return name
        return f"{name},{self.connectivity},{self.layer},{self.subnetwork}-{self.feature_stack}"


def parse_variant(variant: str) -> FANFaceConfig:
    """Parse a Tab. 1 name: "H<s>[+]" or "H<s>[+],<1-1|1M>,<BL|SL|AL>,<h2l|l2h>-<k>".

    Spaces around the commas are ignored ("H2, 1-1, BL, h2l-2" as the paper writes it); "1-M" is
    accepted for "1M". Hourglass numbers are 1-based.

    Raises:
        ValueError: naming the string and the part that is wrong.
    """
    if not isinstance(variant, str):
        raise TypeError(f"variant must be a string such as 'H2,1-1,BL,h2l-2', got {type(variant).__name__}")
    parts = [part.strip() for part in variant.split(",")]
    heatmaps = _HEATMAPS.match(parts[0])
    if heatmaps is None:
        raise ValueError(f"variant {variant!r}: the first part must be H<hourglass>[+] (e.g. 'H2', 'H2+'), "
                         f"got {parts[0]!r}")
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


def adain(content: torch.Tensor, style: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Adaptive instance norm: ``content`` with the per-sample, per-channel mean and std of ``style``.

    AdaIN(c, s) = σ(s)·(c − μ(c))/σ(c) + μ(s), statistics over H×W (biased variance, + eps).
    Shapes: content (B, C, H, W), style (B, C, H', W') → (B, C, H, W).
    """
    c_mean, c_std = _instance_stats(content, eps)
    s_mean, s_std = _instance_stats(style, eps)
    return (content - c_mean) / c_std * s_std + s_mean


def _instance_stats(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
    return mean, (var + eps).sqrt()


def _conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)


class IntegrationLayer(nn.Module):
    """f(x_l, y_k) of eq. 2: the integration layer of Fig. 3 (Sec. 3.4).

    x is interpolated (bilinear) to y's size, then aligned: x' = conv1×1(BN(x)) to C_y channels (a);
    AdaIN gives y the instance statistics of x' (b; ``adain="x"`` gives x' those of y instead); then
    - "BL": concat → 1×1 conv + BN to C_y → PReLU (c);
    - "SL": x' + AdaIN(y, x') → PReLU (no concat, no conv);
    - "AL": concat → bottleneck 1×1 (→ C_y/4), 3×3, 1×1 (→ C_y), BN + PReLU between, BN → PReLU.

    Shapes: x (B, C_x, h, w), y (B, C_y, H, W) → (B, C_y, H, W).
    """

    def __init__(self, x_channels: int, y_channels: int, kind: str = "BL", adain: str = "y"):
        super().__init__()
        if kind not in LAYER_KINDS:
            raise ValueError(f"kind must be one of {LAYER_KINDS}, got {kind!r}")
        if adain not in ("y", "x"):
            raise ValueError(f"adain must be 'y' (restyle y with x's statistics, the paper's text) or 'x', "
                             f"got {adain!r}")
        self.kind, self.adain_target = kind, adain
        self.align = nn.Sequential(nn.BatchNorm2d(x_channels), _conv1x1(x_channels, y_channels))
        if kind == "BL":
            self.mix = nn.Sequential(_conv1x1(2 * y_channels, y_channels), nn.BatchNorm2d(y_channels))
        elif kind == "AL":
            mid = max(1, y_channels // 4)
            self.mix = nn.Sequential(
                _conv1x1(2 * y_channels, mid), nn.BatchNorm2d(mid), nn.PReLU(mid),
                nn.Conv2d(mid, mid, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.PReLU(mid),
                _conv1x1(mid, y_channels), nn.BatchNorm2d(y_channels))
        else:
            self.mix = None
        self.act = nn.PReLU(y_channels)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, adain={self.adain_target!r}"

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=False)
        x = self.align(x)
        if self.adain_target == "y":
            y = adain(y, x)
        else:
            x = adain(x, y)
        combined = x + y if self.mix is None else self.mix(torch.cat([x, y], dim=1))
        return self.act(combined)


class StageIntegration(nn.Module):
    """ỹ_k = y_k + Σ_i γ_{k,i}·f_i(x_{l_i}, y_k) at one FRN stage end (eq. 2; one source for 1-1, all for 1-M).

    Args:
        levels: FAN feature levels (index into the hourglass's high-to-low or low-to-high list) feeding
            this stage.
        x_channels: FAN width; y_channels: the stage's width.
        kind, adain: of every :class:`IntegrationLayer`.
        gamma_init: initial γ (one learnable scalar per source).

    Shapes: features: the hourglass's list of (B, C_x, ·, ·) maps; y (B, C_y, H, W) → (B, C_y, H, W).
    """

    def __init__(self, levels: tuple[int, ...], x_channels: int, y_channels: int, kind: str, adain: str,
                 gamma_init: float):
        super().__init__()
        self.levels = tuple(levels)
        self.layers = nn.ModuleList(IntegrationLayer(x_channels, y_channels, kind, adain) for _ in self.levels)
        self.gamma = nn.Parameter(torch.full((len(self.levels),), float(gamma_init)))

    def extra_repr(self) -> str:
        return f"levels={self.levels}"

    def forward(self, features: list[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        out = y
        for gamma, level, layer in zip(self.gamma, self.levels, self.layers):
            out = out + gamma * layer(features[level], y)
        return out


class FANFace(nn.Module):
    """Frozen FAN + iResNet FRN with heatmap stacking and integration layers (fanface.md Sec. 3, eq. 1-2).

    Args:
        variant: a Tab. 1 name (:func:`parse_variant`) or a :class:`FANFaceConfig`.
        frn: the name of a :mod:`pyfacex.backbones.iresnet` factory (built with ``in_channels=54``) or an
            :class:`IResNet` with ``in_channels == 3 + 51``. For "H…+" variants its layer2-4 first
            blocks and bn2/fc are widened by 51 channels in place, after which it runs inside FANFace only.
        frn_kwargs: keyword arguments of a named FRN factory (``layers``, ``widths``, ``input_size``,
            ``num_features``, ``dropout``, ...).
        embedding_size: shorthand for ``frn_kwargs["num_features"]`` (named FRN only).
        fan: a :class:`FAN` (load face-alignment's weights into it first, e.g. with
            :func:`pyfacex.backbones.fan.truncate_stacks`); None builds ``FAN(**fan_kwargs)`` with
            2 stacks (Sec. 3.1) and random weights. It is frozen: requires_grad False, eval mode kept.
        fan_kwargs: keyword arguments of that FAN (not with a module).
        fan_size: the side FAN sees (256, NOTES.md), a multiple of 4·2^depth.
        gamma_init: initial γ; None: 1 for 1-1, 1/L for 1-M (module docstring).
        adain: "y" (the paper's text) or "x", see :class:`IntegrationLayer`.
        num_classes: identities of the ArcFace head (s, margin); 0: the model only embeds.

    Shapes:
        images (B, 3, H, W) FRN-normalised ((RGB/255 − 0.5)/0.5), H×W = the FRN's ``input_size``;
        labels (B,) int. ``forward`` returns the embedding (B, E), or (loss, embedding) given labels.
    """

    def __init__(self, variant: str | FANFaceConfig = "H2,1-1,BL,h2l-2", frn: IResNet | str = "iresnet34", *,
                 frn_kwargs: dict | None = None, embedding_size: int | None = None, fan: FAN | None = None,
                 fan_kwargs: dict | None = None, fan_size: int = 256, gamma_init: float | None = None,
                 adain: str = "y", num_classes: int = 0, s: float = 64.0, margin: float = 0.5):
        super().__init__()
        self.config = variant if isinstance(variant, FANFaceConfig) else parse_variant(variant)
        self.fan = _frozen_fan(fan, fan_kwargs)
        self.frn = _build_frn(frn, frn_kwargs, embedding_size)
        if not isinstance(fan_size, int) or fan_size <= 0 or fan_size % (4 * 2 ** self.fan.depth):
            raise ValueError(f"fan_size must be a positive multiple of {4 * 2 ** self.fan.depth} "
                             f"(4·2^depth of the FAN), got {fan_size!r}")
        self.fan_size = fan_size
        cfg = self.config
        for name, stack in (("heatmap", cfg.heatmap_stack), ("feature", cfg.feature_stack)):
            if stack is not None and stack > self.fan.num_stacks:
                raise ValueError(f"variant {str(cfg)!r}: {name} hourglass {stack} does not exist, the FAN has "
                                 f"{self.fan.num_stacks} stacks")
        if cfg.heatmaps_everywhere:
            _widen_for_heatmaps(self.frn, NUM_INTERNAL)
        self.integration = None if cfg.connectivity is None else self._build_integration(gamma_init, adain)
        self.embedding_size = self.frn.features.num_features
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        self.head = ArcFace(self.embedding_size, num_classes, s=s, m=margin) if num_classes else None

    def _build_integration(self, gamma_init, adain_target) -> nn.ModuleList:
        one_to_one = [min(k, self.fan.depth) for k in range(4)]
        if self.config.connectivity == "1-1":
            sources = [(level,) for level in one_to_one]
        else:
            sources = [tuple(sorted(set(one_to_one)))] * 4
        return nn.ModuleList(
            StageIntegration(levels, self.fan.width, width, self.config.layer, adain_target,
                             1.0 / len(levels) if gamma_init is None else gamma_init)
            for levels, width in zip(sources, self.frn.widths))

    def extra_repr(self) -> str:
        return f"variant={str(self.config)!r}, fan_size={self.fan_size}"

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

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        """Embedding (B, E); given labels, (ArcFace loss, embedding)."""
        self._check_images(images)
        out = self.landmark_outputs(images)
        heatmaps = out.heatmaps[self.config.heatmap_stack - 1][:, INTERNAL_LANDMARKS].to(images.dtype)
        y = self.frn.stem(torch.cat([images, _resize(heatmaps, images.shape[-2:])], dim=1))  # eq. 1
        features = None
        if self.integration is not None:
            split = out.high_to_low if self.config.subnetwork == "h2l" else out.low_to_high
            features = [f.to(images.dtype) for f in split[self.config.feature_stack - 1]]
        for k, stage in enumerate(self.frn.stage_modules):
            y = stage(y)
            if features is not None:
                y = self.integration[k](features, y)  # eq. 2
            if self.config.heatmaps_everywhere:
                y = torch.cat([y, _resize(heatmaps, y.shape[-2:])], dim=1)  # "H+" (Sec. 5 AS1)
        embedding = self.frn._head(y)
        if labels is None:
            return embedding
        if self.head is None:
            raise ValueError("labels were given but the model has no head: build it with num_classes > 0")
        if not isinstance(labels, torch.Tensor) or labels.shape != embedding.shape[:1]:
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"labels must be a ({embedding.shape[0]},) tensor, one per image, got {got}")
        return self.head(embedding, labels), embedding

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


def _build_frn(frn, frn_kwargs, embedding_size) -> IResNet:
    in_channels = 3 + NUM_INTERNAL
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
        raise ValueError(f"frn must take {in_channels} input channels (RGB + 51 heatmaps, eq. 1), "
                         f"got in_channels={frn.in_channels}")
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
    """FAN-Face(H2) on iResNet-34 (fanface.md Tab. 1 AS1): the 51 internal heatmaps of FAN's 2nd
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
    """FAN-Face(H2,1M,BL,h2l-2) on iResNet-34 (Tab. 1 AS4): as H2,1-1,BL,h2l-2 but every FAN level
    feeds every stage, ŷ_k = y_k + Σ_l γ_{k,l}·f(x_l, y_k) (Sec. 3.3, eq. 2). Overrides go to :class:`FANFace`.
    """
    return _fanface("H2,1M,BL,h2l-2", overrides)
