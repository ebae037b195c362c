"""Backgrounds: a smooth colour field with optional clutter rectangles, per image from its key."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .random import uniform
from .texture import hue_colour

__all__ = ["background"]

_RECTANGLES = 4


def _soft_interval(position: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Anti-aliased indicator of low <= position <= high (pixel units)."""
    return (torch.minimum(position - low, high - position) + 0.5).clamp_(0, 1)


@functools.lru_cache(maxsize=8)
def _upsampling(size: int) -> torch.Tensor:
    """(size, 4) matrix of bilinear upsampling from 4 samples (half-pixel centres, edges clamped)."""
    return F.interpolate(torch.eye(4).unsqueeze(0), size=size, mode="linear", align_corners=False)[0].t().contiguous()


def background(key: torch.Tensor, hue: torch.Tensor, clutter: torch.Tensor, size: int) -> torch.Tensor:
    """Background colours, (B, 3, size*size) in [0, 1].

    Args:
        key: (B,) int64 image keys; hue: (B,) base hue; clutter: (B,) in [0, 1], the chance and
            contrast of each of the clutter rectangles.
    """
    batch = key.numel()
    u = uniform(key, "background", 2 + 48 + 7 * _RECTANGLES).to(torch.float32)
    base = hue_colour(hue, 0.15 + 0.35 * u[:, 0], 0.3 + 0.5 * u[:, 1])            # (B, 3)
    field = (u[:, 2:50].view(batch, 3, 4, 4) - 0.5) * 0.25
    # Bilinear upsampling of the 4×4 field as two small matrix products (faster than F.interpolate).
    spread = _upsampling(size)
    colour = base.view(batch, 3, 1, 1) + spread @ field @ spread.t()
    pixels = torch.arange(size, dtype=torch.float32) + 0.5
    rect = u[:, 50:].view(batch, _RECTANGLES, 7)
    for k in range(_RECTANGLES):
        r = rect[:, k]
        drawn = (r[:, 4] < clutter).nonzero().flatten()       # only the images that have this one
        if drawn.numel() == 0:
            continue
        r = r[drawn]
        x0, y0 = r[:, 0] * size, r[:, 1] * size
        x1, y1 = x0 + (0.1 + 0.5 * r[:, 2]) * size, y0 + (0.1 + 0.5 * r[:, 3]) * size
        cols = _soft_interval(pixels, x0.view(-1, 1), x1.view(-1, 1))
        rows = _soft_interval(pixels, y0.view(-1, 1), y1.view(-1, 1))
        mask = rows.unsqueeze(2) * cols.unsqueeze(1) * clutter[drawn].view(-1, 1, 1)
        paint = hue_colour(r[:, 5], 0.5, 0.2 + 0.7 * r[:, 6]).view(-1, 3, 1, 1)
        colour[drawn] = torch.lerp(colour[drawn], paint, mask.unsqueeze(1))
    return colour.clamp_(0, 1).flatten(2)
