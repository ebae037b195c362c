"""Attentional feature fusion of two feature vectors: MS-CAM and iAFF (Dai et al., "Attentional Feature
Fusion", WACV 2021), the "adapted iAFF" that LGAF compares with its own fusion (LGAF, Sec. 4.2.3, Tab. 4).

Dai et al. define them on feature maps (B, C, H, W). MS-CAM weighs every channel at every position by
σ(L(X) + g(X)): L a pointwise bottleneck (1×1 conv C → C/r, BN, ReLU, 1×1 conv C/r → C, BN) at each
position, g the same bottleneck on the global average pool GAP(X). LGAF fuses embeddings (B, E), which
are 1×1 maps: GAP is then the identity, so both branches read the same vector and each is a two-layer
bottleneck MLP with batch normalisation. They keep their own weights (the parameter count of the
map version), so the "local" and "global" names survive only as the branches' origin.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["MultiScaleChannelAttention", "IterativeAttentionalFusion"]


def _bottleneck(channels: int, hidden: int) -> nn.Sequential:
    # A 1×1 conv on a 1×1 map is a Linear layer; BatchNorm2d over (B, C, 1, 1) is BatchNorm1d over (B, C).
    return nn.Sequential(nn.Linear(channels, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, channels), nn.BatchNorm1d(channels))


def _check_positive(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class MultiScaleChannelAttention(nn.Module):
    """MS-CAM of Dai et al. on vectors: M(X) = σ(L(X) + g(X)), the weight of each channel in (0, 1).

    L and g: Linear C → max(1, C // reduction), BatchNorm1d, ReLU, Linear → C, BatchNorm1d, with their
    own weights (on a 1×1 map the global pool is the identity; module docstring).

    Args:
        channels: C.
        reduction: bottleneck ratio r (Dai et al.'s default 4).

    Shapes: (B, C) → (B, C). Training mode needs B > 1 (batch normalisation).
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(1, _check_positive(channels, "channels") // _check_positive(reduction, "reduction"))
        self.local = _bottleneck(channels, hidden)
        self.global_ = _bottleneck(channels, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.local(x) + self.global_(x))


class IterativeAttentionalFusion(nn.Module):
    """iAFF of Dai et al.: two features fused by soft per-channel selection, the selection itself
    computed from an attentional first fusion.

        X ⊎ Y = M₁(X + Y) ⊗ X + (1 − M₁(X + Y)) ⊗ Y      (the initial integration, an AFF)
        Z     = M₂(X ⊎ Y) ⊗ X + (1 − M₂(X ⊎ Y)) ⊗ Y

    M₁, M₂: two :class:`MultiScaleChannelAttention` with their own weights (the authors' code defines
    both global branches but applies the first one twice; the paper's two stages read as independent).

    Args:
        channels: C of both inputs.
        reduction: r of both MS-CAMs.

    Shapes: x, y (B, C) → (B, C); every output channel lies between x's and y's.
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.attention1 = MultiScaleChannelAttention(channels, reduction)
        self.attention2 = MultiScaleChannelAttention(channels, reduction)

    @staticmethod
    def select(weight: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """weight ⊗ x + (1 − weight) ⊗ y, written as y + weight·(x − y) (which, unlike ``torch.lerp``,
        promotes mixed dtypes, as autocast may leave them)."""
        return y + weight * (x - y)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.dim() != 2:
            raise ValueError(f"x and y must be (B, C) of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        initial = self.select(self.attention1(x + y), x, y)
        return self.select(self.attention2(initial), x, y)
