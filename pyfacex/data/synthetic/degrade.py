"""Camera degradations of rendered faces: motion and gaussian blur, low resolution, noise, JPEG.

Applied in the order a camera and its pipeline would: motion during exposure, defocus, a small
sensor (down and up), sensor noise, 8-bit quantisation and JPEG. Each step runs only on the images
whose factor is active. Noise comes from a generator seeded by each image's key, so an image is the
same whatever batch it is rendered in.
"""
from __future__ import annotations

import torch

from ..transforms import functional as T

__all__ = ["degrade"]


def _apply(images: torch.Tensor, active: torch.Tensor, op, *params: torch.Tensor) -> None:
    index = active.nonzero().flatten()
    if index.numel():
        images[index] = op(images[index], *(param[index] for param in params))


def degrade(images: torch.Tensor, nuisance: dict, key: torch.Tensor) -> torch.Tensor:
    """images (B, 3, S, S) float in [0, 1] -> uint8 (B, 3, S, S) with the nuisance's degradations."""
    size = images.shape[-1]
    _apply(images, nuisance["motion_blur"] > 1, T.motion_blur, nuisance["motion_angle"], nuisance["motion_blur"])
    # Sub-pixel blurs and a lost pixel of resolution are invisible: those images skip the work.
    _apply(images, nuisance["blur"] > 0.3, T.gaussian_blur, nuisance["blur"])
    _apply(images, nuisance["resolution"] < 0.95 * size, T.down_up, nuisance["resolution"].clamp(min=2).long())
    for i in (nuisance["noise"] > 0).nonzero().flatten().tolist():
        generator = torch.Generator().manual_seed(int(key[i]) & 0x7FFFFFFFFFFFFFFF)
        images[i] += float(nuisance["noise"][i]) * torch.randn(images[i].shape, generator=generator)
    result = images.mul_(255).round_().clamp_(0, 255).to(torch.uint8)
    _apply(result, nuisance["jpeg_quality"] < 100, T.jpeg_compress, nuisance["jpeg_quality"].long())
    return result
