"""Deterministic image ops with explicit parameters, vectorised over the batch.

Every op takes one image ``(C, H, W)`` or a batch ``(B, C, H, W)`` and returns the same shape and
dtype. uint8 images hold 0..255; floating images hold [0, 1] (the range the synthetic renderer works
in). Arithmetic runs in float32 (float64 for float64 input) and uint8 results are rounded and
clamped once at the end, so chained parameters lose no precision in between. Ops whose result can
leave the range (photometric factors > 1, noise, bicubic overshoot) clamp float results to [0, 1].

Per-image parameters are a Python number (the same for every image) or a ``(B,)`` tensor; an op on a
single image takes a number or a ``(1,)`` tensor. Borders replicate the edge pixel.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import torch
import torch.nn.functional as F

from ..codec import decode_image, encode_jpeg

__all__ = [
    "INTERPOLATIONS", "normalize", "denormalize", "hflip", "gaussian_blur", "motion_blur",
    "motion_blur_kernels", "down_up", "crop_in_place", "adjust_photometric", "add_gaussian_noise",
    "jpeg_compress", "occlude",
]

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")
# ITU-R 601 luma, the weights torchvision's rgb_to_grayscale uses.
_GREY = (0.2989, 0.587, 0.114)


# --------------------------------------------------------------------------- argument handling

def _as_batch(images: torch.Tensor, name: str = "images") -> tuple[torch.Tensor, bool]:
    """(B, C, H, W) view of images and whether the input was a single (C, H, W) image."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(images).__name__}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"{name}: expected a uint8 or floating tensor, got {images.dtype}")
    if images.dim() == 3:
        return images.unsqueeze(0), True
    if images.dim() == 4:
        return images, False
    raise ValueError(f"{name}: expected shape (C, H, W) or (B, C, H, W), got {tuple(images.shape)}")


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _to_work(batch: torch.Tensor) -> torch.Tensor:
    return batch.to(_work_dtype(batch.dtype))


def _finish(result: torch.Tensor, like: torch.Tensor, single: bool, clamp: bool = False) -> torch.Tensor:
    """Cast a float result back to the input's dtype (uint8: round + clamp) and layout."""
    if like.dtype == torch.uint8:
        result = result.round_().clamp_(0, 255).to(torch.uint8)
    else:
        if clamp:
            result = result.clamp(0, 1)
        result = result.to(like.dtype)
    return result[0] if single else result


def _per_image(value, batch: int, name: str, device: torch.device, minimum: float | None = None,
               maximum: float | None = None) -> torch.Tensor:
    """A number or (B,) tensor as a float64 (B,) tensor on device, range-checked."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            value = value.expand(batch)
        elif value.shape != (batch,):
            raise ValueError(f"{name}: expected a number or a ({batch},) tensor, got shape "
                             f"{tuple(value.shape)}")
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{name}: expected a real tensor, got {value.dtype}")
        value = value.to(device=device, dtype=torch.float64)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = torch.full((batch,), float(value), dtype=torch.float64, device=device)
    else:
        raise TypeError(f"{name}: expected a number or a ({batch},) tensor, got {type(value).__name__}")
    if batch and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name}: expected finite values, got {value.tolist()}")
    if minimum is not None and batch and bool((value < minimum).any()):
        raise ValueError(f"{name}: expected values >= {minimum}, got minimum {value.min().item()}")
    if maximum is not None and batch and bool((value > maximum).any()):
        raise ValueError(f"{name}: expected values <= {maximum}, got maximum {value.max().item()}")
    return value


def _boxes(boxes, batch: int, single: bool, name: str, device: torch.device) -> torch.Tensor:
    """Integer (B, 4) boxes top, left, height, width (one (4,) box for a single image)."""
    if not isinstance(boxes, torch.Tensor):
        boxes = torch.as_tensor(boxes)
    if boxes.is_floating_point() or boxes.dtype == torch.bool or boxes.is_complex():
        raise TypeError(f"{name}: expected an integer tensor, got {boxes.dtype}")
    if single and boxes.shape == (4,):
        boxes = boxes.unsqueeze(0)
    if boxes.shape != (batch, 4):
        raise ValueError(f"{name}: expected shape ({batch}, 4) (top, left, height, width), got "
                         f"{tuple(boxes.shape)}")
    if batch and bool((boxes[:, 2:] < 0).any()):
        raise ValueError(f"{name}: expected height and width >= 0, got {boxes[:, 2:].tolist()}")
    return boxes.to(device=device, dtype=torch.int64)


def _box_mask(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 1, H, W) bool mask of the pixels inside each box (boxes may reach past the image)."""
    rows = torch.arange(height, device=boxes.device)
    cols = torch.arange(width, device=boxes.device)
    top, left, h, w = boxes.unbind(1)
    in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])
    return (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)


def _separable(batch: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """rows[b] @ image_b @ cols[b]ᵀ per channel: a per-image linear filter that acts on each axis
    separately. rows (B, H', H), cols (B, W', W); two batched matmuls, much faster on CPU than
    grouped convolutions or per-image resizes."""
    b, c, h, w = batch.shape
    rows, cols = (m.to(device=batch.device, dtype=batch.dtype) for m in (rows, cols))
    across = torch.bmm(batch.reshape(b, c * h, w), cols.transpose(1, 2)).view(b, c, h, -1)
    return torch.einsum("bij,bcjw->bciw", rows, across)


def _band_matrices(kernels: torch.Tensor, n: int) -> torch.Tensor:
    """(B, n, n) matrices correlating a length-n signal with kernels (B, K), edges replicated."""
    b, k = kernels.shape
    taps = torch.arange(n)[:, None] + torch.arange(k)[None, :] - k // 2
    index = taps.clamp(0, n - 1).expand(b, n, k)
    return kernels.new_zeros(b, n, n).scatter_add_(2, index, kernels[:, None, :].expand(b, n, k))


def _filter2d(batch: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Correlate every channel of image b with kernels[b] (B, kh, kw), replicate borders."""
    b, c, h, w = batch.shape
    kh, kw = kernels.shape[1:]
    padded = F.pad(batch.reshape(1, b * c, h, w), (kw // 2, kw // 2, kh // 2, kh // 2), mode="replicate")
    # One grouped convolution over B*C channels applies a different kernel to each image.
    weight = kernels.to(batch.dtype).repeat_interleave(c, dim=0).unsqueeze(1)
    return F.conv2d(padded, weight, groups=b * c).reshape(b, c, h, w)


# --------------------------------------------------------------------------- ops

def normalize(images: torch.Tensor) -> torch.Tensor:
    """Face-recognition input normalisation: ``(x / 255 - 0.5) / 0.5`` (insightface / arcface_torch).

    Args:
        images: uint8 (…, 3, H, W) RGB, or floating in [0, 1] (then ``(x - 0.5) / 0.5``).
    Returns:
        float32 (float64 for float64 input) of the same shape, in [-1, 1].
    """
    _as_batch(images)
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div(255).sub(0.5).div(0.5)
    return images.to(_work_dtype(images.dtype)).sub(0.5).div(0.5)


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`: floating (…, 3, H, W) in [-1, 1] to uint8 (rounded, clamped)."""
    batch, _ = _as_batch(images)
    if not batch.is_floating_point():
        raise TypeError(f"images: expected a floating tensor in [-1, 1], got {images.dtype}")
    return images.mul(0.5).add(0.5).mul(255).round_().clamp_(0, 255).to(torch.uint8)


def hflip(images: torch.Tensor) -> torch.Tensor:
    """Mirror left-right: (…, C, H, W) -> the same shape and dtype."""
    _as_batch(images)
    return images.flip(-1)


def gaussian_blur(images: torch.Tensor, sigma) -> torch.Tensor:
    """Separable Gaussian blur with a per-image standard deviation.

    Args:
        images: (C, H, W) or (B, C, H, W), uint8 or floating.
        sigma: pixels, number or (B,) tensor, >= 0; 0 leaves the image unchanged. The kernel spans
            ±ceil(3·max sigma) and is normalised to sum 1, so constant images stay constant.
    """
    batch, single = _as_batch(images)
    sigma = _per_image(sigma, batch.shape[0], "sigma", batch.device, minimum=0.0)
    if batch.shape[0] == 0 or not bool((sigma > 0).any()):
        return images.clone()
    radius = math.ceil(3 * sigma.max().item())
    taps = torch.arange(-radius, radius + 1, device=batch.device, dtype=torch.float64)
    # sigma 0 becomes a tiny positive sigma: exp(-x²/2σ²) is then exactly the unit impulse.
    kernels = torch.exp(-taps**2 / (2 * sigma.clamp_min(1e-6)[:, None] ** 2))
    # Far taps of narrow kernels would be float32 denormals, which slow matmuls down tenfold.
    kernels = torch.where(kernels < 1e-12, 0.0, kernels)
    kernels = kernels / kernels.sum(1, keepdim=True)
    _, _, h, w = batch.shape
    work = _separable(_to_work(batch), _band_matrices(kernels, h), _band_matrices(kernels, w))
    return _finish(work, images, single)


def motion_blur_kernels(angle, length, batch: int | None = None) -> torch.Tensor:
    """Antialiased line kernels: a segment of ``length`` pixels through the centre at ``angle``.

    Each pixel weighs the length of the segment inside its box along the line times a tent
    ``max(0, 1 - distance)`` across it, so a horizontal line of odd integer length is a plain box
    of that many pixels. Kernels sum to 1; length <= 1 gives the unit impulse.

    Args:
        angle: degrees, number or (B,) tensor; 0 blurs along the width, 90 along the height
            (counter-clockwise on screen, rows growing downwards).
        length: pixels, number or (B,) tensor, >= 0.
        batch: B when both arguments are numbers (default 1).
    Returns:
        float64 (B, K, K), K odd.
    """
    if batch is None:
        batch = next((v.numel() for v in (angle, length) if isinstance(v, torch.Tensor) and v.dim()), 1)
    angle = _per_image(angle, batch, "angle", torch.device("cpu"))
    length = _per_image(length, batch, "length", torch.device("cpu"), minimum=0.0)
    longest = length.max().item() if batch else 0.0
    # Weights vanish unless |along| < L/2 + 1/2 and |across| < 1, which bounds |x| and |y| by the
    # half-diagonal of that rectangle.
    radius = math.floor(math.hypot(longest / 2 + 0.5, 1)) if longest > 1 else 0
    coords = torch.arange(-radius, radius + 1, dtype=torch.float64)
    y, x = coords[:, None], coords[None, :]
    theta = torch.deg2rad(angle)[:, None, None]
    # Snap cos(90°) ~ 6e-17 to 0 so axis-aligned kernels have no stray weights.
    cos, sin = (torch.where(v.abs() < 1e-12, 0.0, v) for v in (torch.cos(theta), torch.sin(theta)))
    along = x * cos - y * sin  # minus: rows grow downwards, angles turn counter-clockwise on screen
    across = x * sin + y * cos
    half = length[:, None, None] / 2
    inside = (torch.minimum(along + 0.5, half) - torch.maximum(along - 0.5, -half)).clamp_min(0)
    kernels = inside * (1 - across.abs()).clamp_min(0)
    impulse = torch.zeros(kernels.shape[1:], dtype=torch.float64)
    impulse[radius, radius] = 1
    kernels = torch.where((length <= 1)[:, None, None], impulse, kernels)
    return kernels / kernels.sum((1, 2), keepdim=True)


def motion_blur(images: torch.Tensor, angle, length) -> torch.Tensor:
    """Linear motion blur: convolve each image with :func:`motion_blur_kernels` (angle, length).

    Args:
        images: (C, H, W) or (B, C, H, W), uint8 or floating.
        angle: degrees, number or (B,) tensor; 0 = horizontal motion, 90 = vertical.
        length: pixels, number or (B,) tensor; <= 1 leaves the image unchanged.
    """
    batch, single = _as_batch(images)
    kernels = motion_blur_kernels(angle, length, batch.shape[0])
    if batch.shape[0] == 0 or kernels.shape[-1] == 1:
        return images.clone()
    return _finish(_filter2d(_to_work(batch), kernels.to(batch.device)), images, single)


@functools.lru_cache(maxsize=1024)
def _resize_matrix(source: int, target: int, mode: str) -> torch.Tensor:
    """(target, source) float64 matrix M with M @ v == F.interpolate of a length-source signal v."""
    # torch's nearest/bilinear/bicubic/area resizes are separable, so interpolating the identity
    # (one basis vector per batch row) yields the exact 1-D operator of each axis.
    basis = torch.eye(source, dtype=torch.float64).view(source, 1, source, 1)
    kwargs = {} if mode in ("nearest", "area") else {"align_corners": False}
    return F.interpolate(basis, size=(target, 1), mode=mode, **kwargs).view(source, target).T.contiguous()


@functools.lru_cache(maxsize=4096)
def _down_up_matrix(n: int, size: int, down: str, up: str) -> torch.Tensor:
    if size >= n:
        return torch.eye(n, dtype=torch.float64)
    return _resize_matrix(size, n, up) @ _resize_matrix(n, size, down)


def _modes(value, batch: int, name: str) -> list[str]:
    modes = [value] * batch if isinstance(value, str) else list(value)
    if len(modes) != batch:
        raise ValueError(f"{name}: expected one mode or {batch} modes, got {len(modes)}")
    for mode in modes:
        if mode not in INTERPOLATIONS:
            raise ValueError(f"{name}: expected one of {INTERPOLATIONS}, got {mode!r}")
    return modes


def down_up(images: torch.Tensor, size, interpolation: str | Sequence[str] = "bilinear",
            up_interpolation: str | Sequence[str] | None = None) -> torch.Tensor:
    """Simulate low resolution: resize to size×size, then back to (H, W).

    An axis not longer than ``size`` is left alone, so ``size >= max(H, W)`` is the identity. The
    whole round trip of each image is one (H, H) and one (W, W) matrix (torch.nn.functional.interpolate
    with align_corners=False, applied to the identity), so a batch with per-image sizes and modes is
    two batched matmuls and the intermediate small image is never rounded.

    Args:
        images: (C, H, W) or (B, C, H, W), uint8 or floating.
        size: int >= 1 or (B,) integer tensor.
        interpolation: down-sampling mode, one of INTERPOLATIONS, or one per image.
        up_interpolation: up-sampling mode(s); default the same as ``interpolation``.
    """
    batch, single = _as_batch(images)
    b, _, h, w = batch.shape
    if isinstance(size, torch.Tensor) and (size.is_floating_point() or size.dtype == torch.bool):
        raise TypeError(f"size: expected integers, got {size.dtype}")
    if isinstance(size, float):
        raise TypeError(f"size: expected an int, got {size!r}")
    sizes = _per_image(size, b, "size", torch.device("cpu"), minimum=1).long().tolist()
    downs = _modes(interpolation, b, "interpolation")
    ups = _modes(interpolation if up_interpolation is None else up_interpolation, b, "up_interpolation")
    if b == 0 or all(s >= max(h, w) for s in sizes):
        return images.clone()
    rows = torch.stack([_down_up_matrix(h, s, d, u) for s, d, u in zip(sizes, downs, ups)])
    cols = torch.stack([_down_up_matrix(w, s, d, u) for s, d, u in zip(sizes, downs, ups)])
    return _finish(_separable(_to_work(batch), rows, cols), images, single, clamp=True)


def crop_in_place(images: torch.Tensor, boxes) -> torch.Tensor:
    """Keep each image's box and zero the rest (AdaFace's crop pasted back on a black canvas).

    Args:
        images: (C, H, W) or (B, C, H, W), any dtype.
        boxes: integer (B, 4) (or (4,) for one image): top, left, height, width; parts of a box
            outside the image are ignored.
    """
    batch, single = _as_batch(images)
    boxes = _boxes(boxes, batch.shape[0], single, "boxes", batch.device)
    out = batch * _box_mask(boxes, batch.shape[2], batch.shape[3])
    return out[0] if single else out


def _grey(rgb: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(_GREY, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb * weights).sum(1, keepdim=True)


def adjust_photometric(images: torch.Tensor, brightness=1.0, contrast=1.0, saturation=1.0) -> torch.Tensor:
    """Brightness, contrast and saturation factors as torchvision's ColorJitter defines them.

    brightness scales the image; contrast blends it with its mean grey level; saturation blends
    it with its own grey image; each factor 1 is the identity. They are applied in that order and
    the result is clamped after each, as torchvision does. Without the clamps the three commute
    (all are linear and keep the mean grey level's role), so ColorJitter's random order only
    matters where a step saturates.

    Args:
        images: RGB (3, H, W) or (B, 3, H, W), uint8 or floating in [0, 1].
        brightness, contrast, saturation: factors >= 0, numbers or (B,) tensors.
    """
    batch, single = _as_batch(images)
    if batch.shape[1] != 3:
        raise ValueError(f"images: expected 3 (RGB) channels, got shape {tuple(images.shape)}")
    b = batch.shape[0]
    work = _to_work(batch)
    top = 255.0 if batch.dtype == torch.uint8 else 1.0
    factors = [_per_image(v, b, n, batch.device, minimum=0.0).to(work.dtype).view(b, 1, 1, 1)
               for v, n in ((brightness, "brightness"), (contrast, "contrast"), (saturation, "saturation"))]
    bright, contr, sat = factors
    work = (work * bright).clamp_(0, top)
    mean = _grey(work).mean((2, 3), keepdim=True)
    work = (contr * work + (1 - contr) * mean).clamp_(0, top)
    work = (sat * work + (1 - sat) * _grey(work)).clamp_(0, top)
    return _finish(work, images, single)


def add_gaussian_noise(images: torch.Tensor, sigma, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add i.i.d. Gaussian noise per pixel and channel, then clamp to the range.

    Args:
        images: (C, H, W) or (B, C, H, W), uint8 or floating in [0, 1].
        sigma: standard deviation as a fraction of the full range (of 255 for uint8, of 1 for
            floats), so one value means the same on both; number or (B,) tensor, >= 0.
        generator: the noise source (its device must be the images' device); None = global RNG.
    """
    batch, single = _as_batch(images)
    sigma = _per_image(sigma, batch.shape[0], "sigma", batch.device, minimum=0.0)
    work = _to_work(batch)
    top = 255.0 if batch.dtype == torch.uint8 else 1.0
    noise = torch.randn(work.shape, generator=generator, dtype=work.dtype, device=work.device)
    work = work + noise * (sigma.to(work.dtype) * top).view(-1, 1, 1, 1)
    return _finish(work, images, single, clamp=True)


def jpeg_compress(images: torch.Tensor, quality) -> torch.Tensor:
    """JPEG round trip (encode at ``quality``, decode) through :mod:`pyfacex.data.codec`.

    Args:
        images: RGB/grey (C, H, W) or (B, C, H, W), C in {1, 3}, uint8 or floating in [0, 1]
            (quantised to uint8 first).
        quality: 1..100, int or (B,) integer tensor.
    """
    batch, single = _as_batch(images)
    qualities = _per_image(quality, batch.shape[0], "quality", torch.device("cpu"), 1, 100)
    if bool((qualities != qualities.round()).any()):
        raise ValueError(f"quality: expected integers, got {qualities.tolist()}")
    pixels = batch if batch.dtype == torch.uint8 else batch.mul(255).round_().clamp_(0, 255).to(torch.uint8)
    # libjpeg works image by image; the loop is in the codec, not over pixels.
    decoded = [decode_image(encode_jpeg(image.cpu(), int(q)), source=f"jpeg_compress[{i}]")
               for i, (image, q) in enumerate(zip(pixels, qualities.tolist()))]
    out = torch.stack(decoded).to(batch.device) if decoded else pixels.clone()
    if batch.shape[1] == 1 and decoded:
        out = out[:, :1]  # a grey JPEG decodes to RGB; its three channels are equal
    if batch.dtype != torch.uint8:
        out = out.to(batch.dtype) / 255
    return out[0] if single else out


def occlude(images: torch.Tensor, boxes, colors) -> torch.Tensor:
    """Paint one solid rectangle per image (an occluder); height or width 0 paints nothing.

    Args:
        images: (C, H, W) or (B, C, H, W), uint8 or floating.
        boxes: integer (B, 4) (or (4,)): top, left, height, width; parts outside the image ignored.
        colors: in the images' units (0..255 for uint8, [0, 1] for floats): a number, a (C,)
            colour for all, or (B, C) per image.
    """
    batch, single = _as_batch(images)
    b, c, h, w = batch.shape
    boxes = _boxes(boxes, b, single, "boxes", batch.device)
    colors = torch.as_tensor(colors, dtype=torch.float64, device=batch.device)
    if colors.dim() == 0 or colors.shape == (c,):
        colors = colors.expand(b, c)
    elif colors.shape != (b, c):
        raise ValueError(f"colors: expected a number, ({c},) or ({b}, {c}), got {tuple(colors.shape)}")
    top = 255.0 if batch.dtype == torch.uint8 else 1.0
    if b and bool(((colors < 0) | (colors > top)).any()):
        raise ValueError(f"colors: expected values in [0, {top:g}], got {colors.tolist()}")
    if batch.dtype == torch.uint8:
        colors = colors.round()
    fill = colors.to(batch.dtype).view(b, c, 1, 1)
    out = torch.where(_box_mask(boxes, h, w), fill, batch)
    return out[0] if single else out
