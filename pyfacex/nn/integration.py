"""FAN-Face's integration layers: f(x_l, y_k) of eq. 2 and the γ_k-weighted points of one FRN stage.

FAN-Face (Sec. 3.3-3.4, Fig. 3) mixes a feature x_l of the frozen landmark network (FAN, C_x = 256
channels) into a feature y_k of the recognition network (FRN, C_y channels) by
ỹ_k = y_k + γ_k·f(x_l, y_k), f being the Basic (BL), Simple (SL) or Advanced (AL) Layer.

Two readings of the layers' widths (``mix_width``):

* ``mix_width = r`` (default 4, :data:`PAPER_MIX_WIDTH`): the reading that meets Sec. 3.5, "compared to
  the ResNet-34 baseline, the extra parameters ... are from 40K to 110K". The FAN feature is reduced
  to r channels by Fig. 3's BN → 1×1 conv (a), y is brought to the same r channels by a 1×1 conv,
  AdaIN (b) and the concatenation (c) run at width r, and the second 1×1 conv + BN (c) takes the 2r
  channels back to C_y, so the result can be added to y. On iResNet-34 (112 px) every Tab. 1 variant
  with feature integration then adds 46K-93K parameters, heatmap stem included (the README's table,
  computed by :func:`pyfacex.models.fanface_size.parameter_table`).
* ``mix_width = None``: the text read literally: x aligned to C_y channels by the 1×1 conv, the
  concatenation 2·C_y wide, the second 1×1 conv 2·C_y → C_y. It adds about 1M parameters with 1-1
  connectivity on iResNet-34 (the 256·C_y and 2·C_y² convolutions at C_y = 512 alone exceed 110K),
  so it cannot be the layer of Sec. 3.5; it stays available as the wide variant.

Per kind, after AdaIN (r = mix_width, or C_y when wide):

* BL: cat(x', y') → 1×1 conv 2r → C_y → BN → PReLU (Fig. 3);
* SL: x' + y' (Sec. 3.4, "simply adds"); at width r < C_y a 1×1 conv r → C_y + BN follows (the
  least that brings the sum back to C_y), wide SL has none; → PReLU;
* AL: the second 1×1 conv replaced by a bottleneck 1×1 (2r → m), 3×3 (m → m), 1×1 (m → C_y), BN +
  PReLU between and BN at the end, m = r (reduced) or C_y / 4 (wide); → PReLU.

AdaIN follows Sec. 3.4 (b), "makes the distribution of y_k similar to that of x_l": y' = AdaIN(y, x');
``adain="x"`` restyles x' with y's statistics instead.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FeatureAlign", "IntegrationLayer", "LAYER_KINDS", "PAPER_MIX_WIDTH", "StageIntegration", "adain"]

LAYER_KINDS = ("BL", "SL", "AL")
PAPER_MIX_WIDTH = 4
"""The mixing width r of the reading that meets FAN-Face Sec. 3.5's 40K-110K (module docstring)."""


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


def _check_mix_width(mix_width) -> None:
    if mix_width is not None and (isinstance(mix_width, bool) or not isinstance(mix_width, int) or mix_width < 1):
        raise ValueError(f"mix_width must be a positive int (the reduced mixing width, FAN-Face Sec. 3.5 reading) "
                         f"or None (the wide layers), got {mix_width!r}")


class FeatureAlign(nn.Module):
    """Fig. 3 (a) of FAN-Face: x_l resized (bilinear) to y's size, BN, then a 1×1 conv to ``out_channels``.

    Shapes: x (B, x_channels, h, w), size (H, W) → (B, out_channels, H, W).
    """

    def __init__(self, x_channels: int, out_channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(x_channels)
        self.conv = _conv1x1(x_channels, out_channels)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
        return self.conv(self.bn(x))


class IntegrationLayer(nn.Module):
    """FAN-Face's f (Sec. 3.4, Fig. 3) after (a): AdaIN, combination and PReLU of an aligned x' and y.

    Args:
        y_channels: C_y, the FRN feature's width (and the output's).
        kind: "BL", "SL" or "AL" (module docstring).
        adain: "y" (y takes x''s statistics, the paper's text) or "x".
        mix_width: r, the width x' has and y is reduced to; None: the wide layer (x' has C_y channels).

    Shapes: x_aligned (B, r or C_y, H, W), y (B, C_y, H, W) → (B, C_y, H, W).
    """

    def __init__(self, y_channels: int, kind: str = "BL", adain: str = "y", mix_width: int | None = PAPER_MIX_WIDTH):
        super().__init__()
        if kind not in LAYER_KINDS:
            raise ValueError(f"kind must be one of {LAYER_KINDS}, got {kind!r}")
        if adain not in ("y", "x"):
            raise ValueError(f"adain must be 'y' (restyle y with x's statistics, the paper's text) or 'x', "
                             f"got {adain!r}")
        _check_mix_width(mix_width)
        self.kind, self.adain_target, self.mix_width = kind, adain, mix_width
        width = y_channels if mix_width is None else mix_width
        self.reduce = None if mix_width is None else _conv1x1(y_channels, width)
        if kind == "BL":
            self.mix = nn.Sequential(_conv1x1(2 * width, y_channels), nn.BatchNorm2d(y_channels))
        elif kind == "AL":
            mid = max(1, y_channels // 4) if mix_width is None else width
            self.mix = nn.Sequential(
                _conv1x1(2 * width, mid), nn.BatchNorm2d(mid), nn.PReLU(mid),
                nn.Conv2d(mid, mid, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.PReLU(mid),
                _conv1x1(mid, y_channels), nn.BatchNorm2d(y_channels))
        else:  # SL adds; only the reduced reading needs a way back to C_y
            self.mix = None if mix_width is None else nn.Sequential(_conv1x1(width, y_channels),
                                                                    nn.BatchNorm2d(y_channels))
        self.act = nn.PReLU(y_channels)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, adain={self.adain_target!r}, mix_width={self.mix_width}"

    def forward(self, x_aligned: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mixed_y = y if self.reduce is None else self.reduce(y)
        if x_aligned.shape[1] != mixed_y.shape[1]:
            raise ValueError(f"x_aligned must have {mixed_y.shape[1]} channels (the mixing width), "
                             f"got {x_aligned.shape[1]}")
        if self.adain_target == "y":
            mixed_y = adain(mixed_y, x_aligned)
        else:
            x_aligned = adain(x_aligned, mixed_y)
        if self.kind == "SL":
            combined = x_aligned + mixed_y
            combined = combined if self.mix is None else self.mix(combined)
        else:
            combined = self.mix(torch.cat([x_aligned, mixed_y], dim=1))
        return self.act(combined)


class StageIntegration(nn.Module):
    """One FRN stage's integration points, ỹ_k = y_k + γ_k·f(x_l, y_k) (FAN-Face Sec. 3.3, eq. 2).

    One FAN tensor x_l per resolution (Sec. 3.3) is aligned once (:class:`FeatureAlign`) and mixed
    into the output of every block listed in ``points``, each point with its own
    :class:`IntegrationLayer` and learnable γ_k: 1-1 connectivity is the stage's last block only,
    1-M every block of the stage.

    Args:
        num_blocks: blocks in the stage; points: 0-based indices of the blocks after which to integrate.
        x_channels: C_x (FAN width); y_channels: the stage's width.
        kind, adain, mix_width: of every :class:`IntegrationLayer`.
        gamma_init: initial γ_k of every point.

    Shapes: blocks: the stage (``num_blocks`` modules); x (B, C_x, h, w); y (B, C_in, H_in, W_in), the
    stage's input → (B, C_y, H, W), its output.
    """

    def __init__(self, num_blocks: int, points: tuple[int, ...], x_channels: int, y_channels: int,
                 kind: str = "BL", adain: str = "y", mix_width: int | None = PAPER_MIX_WIDTH,
                 gamma_init: float = 1.0):
        super().__init__()
        points = tuple(points)
        if not points or sorted(set(points)) != list(points) or not all(0 <= p < num_blocks for p in points):
            raise ValueError(f"points must be increasing block indices in 0..{num_blocks - 1}, got {points}")
        _check_mix_width(mix_width)
        self.num_blocks, self.points = num_blocks, points
        self.align = FeatureAlign(x_channels, y_channels if mix_width is None else mix_width)
        self.layers = nn.ModuleList(IntegrationLayer(y_channels, kind, adain, mix_width) for _ in points)
        self.gamma = nn.Parameter(torch.full((len(points),), float(gamma_init)))

    def extra_repr(self) -> str:
        return f"num_blocks={self.num_blocks}, points={self.points}"

    def forward(self, blocks: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if len(blocks) != self.num_blocks:
            raise ValueError(f"blocks must be the stage's {self.num_blocks} blocks, got {len(blocks)}")
        x_aligned, layer_of = None, dict(zip(self.points, range(len(self.points))))
        for index, block in enumerate(blocks):
            y = block(y)
            if index in layer_of:
                if x_aligned is None:  # all blocks of a stage share its resolution: align x once
                    x_aligned = self.align(x, y.shape[-2:])
                point = layer_of[index]
                y = y + self.gamma[point] * self.layers[point](x_aligned, y)
        return y
