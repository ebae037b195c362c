"""Random transforms: callables ``t(images, generator=None) -> images``, parameters drawn per image.

All random numbers come from ``generator`` (a CPU ``torch.Generator``; None = torch's global RNG),
always the same count for a given batch size and in the same order whatever was drawn, so a seeded
generator reproduces a batch exactly. The deterministic work is done by :mod:`.functional` on the
images selected with probability ``p``; the others are returned untouched.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import torch

from . import functional as TF

__all__ = ["Compose", "RandomHorizontalFlip", "LowQualityAugment", "LowQualityParams",
           "RandomMotionBlur", "RandomDownUp", "RandomOcclusion", "sample_resized_crop_boxes"]


def _probability(p: float, name: str = "p") -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {p!r}")
    return float(p)


def _range(value: Sequence[float], name: str, low: float = 0.0) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a pair (min, max), got {value!r}") from None
    if not low <= a <= b:
        raise ValueError(f"{name}: expected {low} <= min <= max, got {value!r}")
    return a, b


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def _choice(n: int, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """n indices uniform in 0..count-1."""
    return (torch.rand(n, generator=generator, dtype=torch.float64) * count).long().clamp_(max=count - 1)


def _apply_where(images: torch.Tensor, chosen: torch.Tensor,
                 fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """images with fn(images[idx], idx) written at the chosen indices (idx on CPU)."""
    idx = chosen.nonzero().flatten()
    if idx.numel() == 0:
        return images
    out = images.clone()
    out[idx.to(images.device)] = fn(images[idx.to(images.device)], idx)
    return out


def _batched(images: torch.Tensor, fn) -> torch.Tensor:
    batch, single = TF._as_batch(images)
    out = fn(batch)
    return out[0] if single else out


class Compose:
    """Apply random transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not callable(t):
                raise TypeError(f"transforms[{i}]: expected a callable (images, generator), got {t!r}")

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for t in self.transforms:
            images = t(images, generator)
        return images

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability p. (C,H,W) or (B,C,H,W), any dtype."""

    def __init__(self, p: float = 0.5):
        self.p = _probability(p)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        def run(batch):
            chosen = torch.rand(batch.shape[0], generator=generator) < self.p
            return torch.where(chosen.to(batch.device).view(-1, 1, 1, 1), batch.flip(-1), batch)
        return _batched(images, run)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


def sample_resized_crop_boxes(batch: int, height: int, width: int, scale=(0.2, 1.0),
                              ratio=(3 / 4, 4 / 3), generator: torch.Generator | None = None,
                              attempts: int = 10) -> torch.Tensor:
    """torchvision RandomResizedCrop.get_params for a batch: int64 (B, 4) top, left, height, width.

    Area fraction uniform in ``scale``, aspect ratio w/h log-uniform in ``ratio``; the first of
    ``attempts`` draws that fits wins, else the central crop of the clamped ratio (as torchvision).
    """
    area = height * width
    target = area * _uniform(batch * attempts, *scale, generator).view(batch, attempts)
    log_ratio = _uniform(batch * attempts, math.log(ratio[0]), math.log(ratio[1]), generator)
    aspect = log_ratio.view(batch, attempts).exp()
    w = (target * aspect).sqrt().round().long()
    h = (target / aspect).sqrt().round().long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.long().argmax(1, keepdim=True)  # argmax of 0/1 = first fitting attempt
    h, w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
    # Fallback: torchvision's central crop when no attempt fits.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fw, fh = int(round(height * ratio[1])), height
    else:
        fw, fh = width, height
    none = ~fits.any(1)
    h, w = torch.where(none, fh, h), torch.where(none, fw, w)
    pos = torch.rand(batch, 2, generator=generator, dtype=torch.float64)
    top = (pos[:, 0] * (height - h + 1)).long().clamp_max(height - h)
    left = (pos[:, 1] * (width - w + 1)).long().clamp_max(width - w)
    top, left = torch.where(none, (height - h) // 2, top), torch.where(none, (width - w) // 2, left)
    return torch.stack([top, left, h, w], 1)


class LowQualityParams(NamedTuple):
    """What :meth:`LowQualityAugment.with_params` did to each image (all (B,) CPU tensors except boxes).

    crop_boxes: int64 (B, 4) top, left, height, width kept (the whole image when not cropped).
    crop_ratio: float64, min(h, w) / max(H, W) of the kept box (AdaFace's crop ratio; 1 if not cropped).
    low_res_size: int64, side the image was down-sampled to (max(H, W) when not).
    photometric: float64 (B, 3) brightness, contrast, saturation factors (1 when not applied).
    """

    crop_boxes: torch.Tensor
    crop_ratio: torch.Tensor
    low_res_size: torch.Tensor
    photometric: torch.Tensor


class LowQualityAugment:
    """AdaFace's low-quality augmenter (used by LGAF Sec. 4.1.3 and QAFace Sec. 4.4), batched.

    In AdaFace's order, each with its own probability per image:
    1. crop: a RandomResizedCrop box (area ``crop_scale``, aspect ``crop_ratio``) kept in place,
       the rest black (:func:`~.functional.crop_in_place`);
    2. low resolution: side ``int(u * H)``, u uniform in ``low_res_ratio``, down-sampled and
       up-sampled back with independently drawn modes from ``interpolations`` (:func:`~.functional.down_up`);
    3. photometric: ColorJitter factors uniform in [1 - x, 1 + x] for brightness, contrast,
       saturation (:func:`~.functional.adjust_photometric`).

    Call with (C, H, W) or (B, C, H, W) images (uint8 or floating in [0, 1]) and a generator.
    """

    def __init__(self, p_crop: float = 0.2, p_photometric: float = 0.2, p_low_res: float = 0.2,
                 crop_scale=(0.2, 1.0), crop_ratio=(3 / 4, 4 / 3), low_res_ratio=(0.2, 1.0),
                 brightness: float = 0.5, contrast: float = 0.5, saturation: float = 0.5,
                 interpolations: Sequence[str] = TF.INTERPOLATIONS):
        self.p_crop = _probability(p_crop, "p_crop")
        self.p_photometric = _probability(p_photometric, "p_photometric")
        self.p_low_res = _probability(p_low_res, "p_low_res")
        self.crop_scale = _range(crop_scale, "crop_scale")
        if not (0 < self.crop_scale[0] and self.crop_scale[1] <= 1):
            raise ValueError(f"crop_scale: expected 0 < min <= max <= 1, got {crop_scale!r}")
        self.crop_ratio = _range(crop_ratio, "crop_ratio")
        if self.crop_ratio[0] <= 0:
            raise ValueError(f"crop_ratio: expected 0 < min <= max, got {crop_ratio!r}")
        self.low_res_ratio = _range(low_res_ratio, "low_res_ratio")
        if self.low_res_ratio[1] > 1:
            raise ValueError(f"low_res_ratio: expected 0 <= min <= max <= 1, got {low_res_ratio!r}")
        self.jitter = []
        for value, name in ((brightness, "brightness"), (contrast, "contrast"), (saturation, "saturation")):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
            self.jitter.append((max(0.0, 1.0 - value), 1.0 + value))
        self.interpolations = TF._modes(list(interpolations), len(interpolations), "interpolations")
        if not self.interpolations:
            raise ValueError("interpolations: expected at least one mode")

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.with_params(images, generator)[0]

    def with_params(self, images: torch.Tensor, generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, LowQualityParams]:
        """Augment as __call__ and also return the :class:`LowQualityParams` used."""
        batch, single = TF._as_batch(images)
        b, _, h, w = batch.shape
        if batch.shape[1] != 3:
            raise ValueError(f"images: expected 3 (RGB) channels, got shape {tuple(images.shape)}")
        draws = torch.rand(b, 3, generator=generator)
        chances = torch.tensor([self.p_crop, self.p_low_res, self.p_photometric])
        do_crop, do_low, do_photo = (draws < chances).unbind(1)

        boxes = sample_resized_crop_boxes(b, h, w, self.crop_scale, self.crop_ratio, generator)
        boxes = torch.where(do_crop[:, None], boxes, torch.tensor([0, 0, h, w]))
        sizes = (_uniform(b, *self.low_res_ratio, generator) * h).long().clamp_(min=1)
        sizes = torch.where(do_low, sizes, max(h, w))
        modes = _choice(2 * b, len(self.interpolations), generator).view(b, 2).tolist()
        factors = torch.stack([_uniform(b, lo, hi, generator) for lo, hi in self.jitter], 1)
        factors = torch.where(do_photo[:, None], factors, 1.0)

        out = _apply_where(batch, do_crop, lambda x, i: TF.crop_in_place(x, boxes[i]))
        out = _apply_where(out, do_low, lambda x, i: TF.down_up(
            x, sizes[i], [self.interpolations[modes[k][0]] for k in i.tolist()],
            [self.interpolations[modes[k][1]] for k in i.tolist()]))
        out = _apply_where(out, do_photo, lambda x, i: TF.adjust_photometric(x, *factors[i].unbind(1)))
        ratio = boxes[:, 2:].min(1).values.double() / max(h, w)
        params = LowQualityParams(boxes, ratio, sizes, factors)
        return (out[0] if single else out), params

    def __repr__(self) -> str:
        return (f"LowQualityAugment(p_crop={self.p_crop}, p_photometric={self.p_photometric}, "
                f"p_low_res={self.p_low_res})")


class RandomMotionBlur:
    """Face Aggregation Network's motion blur (Sec. 4.1): with probability p, a line kernel of an
    integer length uniform in [min_length, max_length] pixels at an angle uniform in [0°, 180°)."""

    def __init__(self, max_length: int = 9, p: float = 0.5, min_length: int = 3):
        self.p = _probability(p)
        if not (isinstance(max_length, int) and isinstance(min_length, int) and 1 <= min_length <= max_length):
            raise ValueError(f"min_length, max_length: expected integers 1 <= min_length <= max_length, "
                             f"got {min_length!r}, {max_length!r}")
        self.min_length, self.max_length = min_length, max_length

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        def run(batch):
            b = batch.shape[0]
            chosen = torch.rand(b, generator=generator) < self.p
            span = self.max_length - self.min_length + 1
            lengths = (self.min_length + _choice(b, span, generator)).double()
            angles = _uniform(b, 0.0, 180.0, generator)
            return _apply_where(batch, chosen, lambda x, i: TF.motion_blur(x, angles[i], lengths[i]))
        return _batched(images, run)

    def __repr__(self) -> str:
        return f"RandomMotionBlur(max_length={self.max_length}, p={self.p}, min_length={self.min_length})"


class RandomDownUp:
    """With probability p, down-sample to a side drawn uniformly from ``sizes`` and back up
    (:func:`~.functional.down_up`), with a mode drawn from ``interpolations`` for each direction."""

    def __init__(self, sizes: Sequence[int] = (8, 16, 32), p: float = 0.5,
                 interpolations: Sequence[str] = ("bilinear",)):
        self.p = _probability(p)
        self.sizes = list(sizes)
        if not self.sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in self.sizes):
            raise ValueError(f"sizes: expected a non-empty sequence of ints >= 1, got {sizes!r}")
        self.interpolations = TF._modes(list(interpolations), len(interpolations), "interpolations")
        if not self.interpolations:
            raise ValueError("interpolations: expected at least one mode")

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        def run(batch):
            b = batch.shape[0]
            chosen = torch.rand(b, generator=generator) < self.p
            sizes = torch.tensor(self.sizes)[_choice(b, len(self.sizes), generator)]
            picks = _choice(2 * b, len(self.interpolations), generator).tolist()
            modes = [self.interpolations[k] for k in picks]
            return _apply_where(batch, chosen, lambda x, i: TF.down_up(
                x, sizes[i], [modes[2 * k] for k in i.tolist()], [modes[2 * k + 1] for k in i.tolist()]))
        return _batched(images, run)

    def __repr__(self) -> str:
        return f"RandomDownUp(sizes={self.sizes}, p={self.p}, interpolations={self.interpolations})"


class RandomOcclusion:
    """With probability p, paint one solid rectangle covering a fraction of the image uniform in
    [min_area, max_area], aspect ratio (w/h) log-uniform in ``ratio``, placed uniformly inside.

    ``color`` is an RGB triple in [0, 1] (scaled to 0..255 for uint8 images), or None for a colour
    drawn uniformly per image.
    """

    def __init__(self, p: float = 0.5, max_area: float = 0.25, min_area: float = 0.02,
                 ratio=(0.3, 1 / 0.3), color: Sequence[float] | None = None):
        self.p = _probability(p)
        self.min_area, self.max_area = _range((min_area, max_area), "min_area, max_area")
        if self.max_area > 1:
            raise ValueError(f"max_area: expected a fraction in [min_area, 1], got {max_area!r}")
        self.ratio = _range(ratio, "ratio")
        if self.ratio[0] <= 0:
            raise ValueError(f"ratio: expected 0 < min <= max, got {ratio!r}")
        if color is not None:
            color = tuple(float(c) for c in color)
            if len(color) != 3 or not all(0 <= c <= 1 for c in color):
                raise ValueError(f"color: expected an RGB triple in [0, 1] or None, got {color!r}")
        self.color = color

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        def run(batch):
            b, c, h, w = batch.shape
            chosen = torch.rand(b, generator=generator) < self.p
            area = _uniform(b, self.min_area, self.max_area, generator) * h * w
            aspect = _uniform(b, math.log(self.ratio[0]), math.log(self.ratio[1]), generator).exp()
            bh = (area / aspect).sqrt().round().long().clamp(0, h)
            bw = (area * aspect).sqrt().round().long().clamp(0, w)
            pos = torch.rand(b, 2, generator=generator, dtype=torch.float64)
            top = (pos[:, 0] * (h - bh + 1)).long().clamp_max(h - bh)
            left = (pos[:, 1] * (w - bw + 1)).long().clamp_max(w - bw)
            boxes = torch.stack([top, left, bh, bw], 1)
            colors = torch.rand(b, 3, generator=generator, dtype=torch.float64)
            if self.color is not None:
                colors = torch.tensor(self.color, dtype=torch.float64).expand(b, 3)
            colors = colors[:, :c] * (255 if batch.dtype == torch.uint8 else 1)
            return _apply_where(batch, chosen, lambda x, i: TF.occlude(x, boxes[i], colors[i]))
        return _batched(images, run)

    def __repr__(self) -> str:
        return f"RandomOcclusion(p={self.p}, min_area={self.min_area}, max_area={self.max_area})"
