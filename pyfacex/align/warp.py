"""Affine warps of uint8 or float image batches (``cv2.warpAffine`` with bilinear interpolation and a
constant border) and insightface's ``norm_crop``, in pure torch so they run on any device."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ._checks import as_matrix, as_points
from .similarity import estimate_norm, invert_affine
from .template import check_image_size

__all__ = ["warp_affine", "norm_crop"]


def _image_batch(images, name: str) -> tuple[torch.Tensor, bool]:
    """(B, C, H, W) view of uint8 / floating images and whether the input was one (C, H, W) image."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(images).__name__}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"{name}: expected a uint8 or floating tensor, got {images.dtype}")
    if images.dim() not in (3, 4) or 0 in images.shape[-3:]:
        raise ValueError(f"{name}: expected shape (C, H, W) or (B, C, H, W) with C, H, W >= 1, "
                         f"got {tuple(images.shape)}")
    return (images.unsqueeze(0), True) if images.dim() == 3 else (images, False)


def _output_size(size, name: str = "size") -> tuple[int, int]:
    """``size`` (an int S or a pair (height, width)) as (height, width) of positive ints."""
    pair = (size, size) if not isinstance(size, Sequence) else tuple(size)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0 for v in pair):
        raise ValueError(f"{name}: expected a positive int or a (height, width) pair of them, got {size!r}")
    return int(pair[0]), int(pair[1])


def warp_affine(images: torch.Tensor, matrix, size, border_value: float = 0.0) -> torch.Tensor:
    """Warp images by affine maps, as ``cv2.warpAffine(image, M, (width, height),
    flags=INTER_LINEAR, borderMode=BORDER_CONSTANT, borderValue=border_value)``.

    Output pixel (x, y) takes the bilinear interpolation of the input at ``M⁻¹ @ [x, y, 1]`` (pixel
    centres at integers); neighbours outside the input count as ``border_value``, so the edge of the
    photo fades into the border over one pixel as in OpenCV. The four neighbours are gathered from
    the input as stored: a uint8 photo is never converted to float whole, only the taps the output
    reads (a 12-megapixel batch costs its output's size in float, not four times its own).

    Args:
        images: (B, C, H, W) or (C, H, W), uint8 or floating, on any device.
        matrix: (B, 2, 3) or (2, 3) maps from input to output pixels (one (2, 3) for the whole batch is
            broadcast), invertible.
        size: output side S or (height, width).
        border_value: the value outside the input (in the images' units).
    Returns:
        (B, C, height, width) or (C, height, width) in ``images``' dtype and device (uint8 rounded
        to nearest and clamped to 0..255).
    Raises:
        TypeError / ValueError naming ``images``, ``matrix`` or ``size``.
    """
    batch, single = _image_batch(images, "images")
    m = as_matrix(matrix, "matrix")
    if m.dim() not in (2, 3) or (m.dim() == 3 and m.shape[0] != batch.shape[0]):
        raise ValueError(f"matrix: expected shape (2, 3) or ({batch.shape[0]}, 2, 3) for images of shape "
                         f"{tuple(images.shape)}, got {tuple(m.shape)}")
    height, width = _output_size(size)
    n, channels, in_h, in_w = batch.shape
    inverse = invert_affine(m.to(device=batch.device, dtype=torch.float64)).expand(n, 2, 3)
    # Source positions in float64: a photo thousands of pixels wide keeps sub-1/1000-pixel accuracy.
    ys = torch.arange(height, device=batch.device, dtype=torch.float64).view(1, height, 1)
    xs = torch.arange(width, device=batch.device, dtype=torch.float64).view(1, 1, width)
    coef = inverse.reshape(n, 6, 1, 1).unbind(1)
    sx = coef[0] * xs + coef[1] * ys + coef[2]                             # (B, height, width)
    sy = coef[3] * xs + coef[4] * ys + coef[5]
    # Beyond [-2, side + 1] both taps are outside whatever the exact position, so clamping there
    # keeps the weights in [0, 1] (a far-away position cannot cancel a large border value badly)
    # and the integer cast from overflowing.
    sx, sy = sx.clamp(-2, in_w + 1), sy.clamp(-2, in_h + 1)
    x0, y0 = sx.floor(), sy.floor()
    work = torch.float64 if batch.dtype == torch.float64 else torch.float32
    fx, fy = (sx - x0).to(work), (sy - y0).to(work)
    x0, y0 = x0.long(), y0.long()
    flat = batch.reshape(n, channels, in_h * in_w)
    out = torch.zeros(n, channels, height * width, device=batch.device, dtype=work)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        xi, yi = x0 + dx, y0 + dy
        inside = ((xi >= 0) & (xi < in_w) & (yi >= 0) & (yi < in_h)).reshape(n, 1, height * width)
        index = (yi.clamp(0, in_h - 1) * in_w + xi.clamp(0, in_w - 1)).reshape(n, 1, height * width)
        taps = flat.gather(2, index.expand(n, channels, -1)).to(work)
        weight = ((fx if dx else 1 - fx) * (fy if dy else 1 - fy)).reshape(n, 1, height * width)
        out += weight * torch.where(inside, taps, torch.as_tensor(border_value, dtype=work, device=out.device))
    out = out.reshape(n, channels, height, width)
    if batch.dtype == torch.uint8:
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    else:
        out = out.to(batch.dtype)
    return out[0] if single else out


def norm_crop(images, landmarks, image_size: int = 112) -> torch.Tensor:
    """insightface's ``face_align.norm_crop``: crop each face so its five landmarks fall on the
    ArcFace template of an ``image_size`` crop (similarity fit, bilinear, black border).

    To draw on the photo what is found in the crop, map it back with
    ``transform_points(points, invert_affine(estimate_norm(landmarks, image_size)))``.

    Args:
        images: uint8 RGB (B, 3, H, W) or (3, H, W) (float images work too and keep their dtype), on
            any device; or a sequence of B (3, H_i, W_i) photos of different sizes.
        landmarks: (B, 5, 2) or, for one image, (5, 2) pixel x, y in insightface's order (see
            :func:`~pyfacex.align.five_points` for 68 points). Moved to the images' device.
        image_size: the crop side, a positive multiple of 112 or 128.
    Returns:
        (B, 3, image_size, image_size), or (3, image_size, image_size) for one (3, H, W) image, in the
        images' dtype; a sequence gives a (B, ...) batch.
    Raises:
        TypeError / ValueError naming ``images``, ``landmarks`` or ``image_size``.
    """
    size = check_image_size(image_size)
    points = as_points(landmarks, "landmarks", count=5)
    if isinstance(images, Sequence) and not isinstance(images, torch.Tensor):
        if tuple(points.shape) != (len(images), 5, 2):
            raise ValueError(f"landmarks: expected shape ({len(images)}, 5, 2) for {len(images)} images, "
                             f"got {tuple(points.shape)}")
        if not images:  # nothing to take a dtype or device from: the documented uint8 on the CPU
            return torch.empty(0, 3, size, size, dtype=torch.uint8)
        return torch.stack([norm_crop(image, points[i], size) for i, image in enumerate(images)])
    batch, single = _image_batch(images, "images")
    if batch.shape[1] != 3:
        raise ValueError(f"images: expected RGB (B, 3, H, W) or (3, H, W), got shape {tuple(images.shape)}")
    expected = (5, 2) if single else (batch.shape[0], 5, 2)
    if tuple(points.shape) != expected:
        raise ValueError(f"landmarks: expected shape {expected} for images of shape {tuple(images.shape)}, "
                         f"got {tuple(points.shape)}")
    return warp_affine(images, estimate_norm(points.to(images.device), size), size)
