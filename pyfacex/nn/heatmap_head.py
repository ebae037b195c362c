"""A landmark-heatmap prediction head, for FAN-Face's multi-task baseline (FAN-Face Sec. 5, AS7).

AS7 adds "a heatmap prediction head after layer 4" of ResNet-34 and does not describe it. The head
here is the one of Simple Baselines (Xiao, Wu and Wei 2018, which FAN-Face cites for heatmap
regression in AS6): ``upsamplings`` × (4×4 transposed conv, stride 2 → BN → ReLU), then a 1×1 conv
(with bias) to one map per landmark; 7×7 → 56×56 with the default 3 upsamplings.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["HeatmapHead"]


class HeatmapHead(nn.Module):
    """Deconvolution head predicting landmark heatmaps from a feature map (Simple Baselines' head).

    Args:
        in_channels: width of the input map (512 after iResNet-34's layer 4).
        num_landmarks: output maps (51 internal landmarks in FAN-Face).
        channels: width of the transposed convs (256 in Simple Baselines).
        upsamplings: number of ×2 transposed convs (3).

    Shapes: (B, in_channels, h, w) → (B, num_landmarks, h·2^upsamplings, w·2^upsamplings).
    """

    def __init__(self, in_channels: int, num_landmarks: int, channels: int = 256, upsamplings: int = 3):
        super().__init__()
        for name, value, low in (("in_channels", in_channels, 1), ("num_landmarks", num_landmarks, 1),
                                 ("channels", channels, 1), ("upsamplings", upsamplings, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        layers, width = [], in_channels
        for _ in range(upsamplings):
            layers += [nn.ConvTranspose2d(width, channels, kernel_size=4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
            width = channels
        layers.append(nn.Conv2d(width, num_landmarks, kernel_size=1))
        self.layers = nn.Sequential(*layers)
        self.upsamplings = upsamplings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
