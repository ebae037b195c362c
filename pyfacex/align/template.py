"""insightface's ArcFace 5-point template and its variants for other crop sizes."""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["ARCFACE_TEMPLATE", "arcface_template", "check_image_size"]

ARCFACE_TEMPLATE = torch.tensor(
    [[38.2946, 51.6963],   # image-left eye centre (the subject's right eye)
     [73.5318, 51.5014],   # image-right eye centre
     [56.0252, 71.7366],   # nose tip
     [41.5493, 92.3655],   # image-left mouth corner
     [70.7299, 92.2041]],  # image-right mouth corner
    dtype=torch.float32)
"""(5, 2) float32 pixel x, y of insightface's five points in a 112×112 crop (``face_align.arcface_dst``),
pixel centres at integers. Treat it as read-only; :func:`arcface_template` returns a fresh copy."""


def check_image_size(image_size, name: str = "image_size") -> int:
    """``image_size`` as an int that is a positive multiple of 112 or of 128, or a clear error."""
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise TypeError(f"{name}: expected an int (a multiple of 112 or 128), got {type(image_size).__name__} "
                        f"{image_size!r}")
    if image_size <= 0 or (image_size % 112 and image_size % 128):
        raise ValueError(f"{name}: expected a positive multiple of 112 or 128 (insightface's rule), "
                         f"got {image_size}")
    return int(image_size)


def arcface_template(image_size: int = 112, *, dtype: torch.dtype = torch.float64,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """The five template points for an ``image_size``×``image_size`` crop, (5, 2).

    insightface's ``estimate_norm`` rule: a multiple of 112 scales the 112 template by
    ``image_size / 112``; otherwise a multiple of 128 scales it by ``r = image_size / 128`` and
    shifts x by ``8·r`` (the 112 face centred in a 128 crop). A size that is a multiple of both
    (896, 1792, ...) takes the 112 rule, as insightface's ``if`` does.

    Args:
        image_size: a positive multiple of 112 or 128.
        dtype, device: of the returned tensor (float64 by default: the estimation runs in float64);
            the points are computed in float32 first, as insightface's are.
    Returns:
        (5, 2) pixel x, y in the crop.
    Raises:
        TypeError / ValueError naming ``image_size``.
    """
    size = check_image_size(image_size)
    # In float32 as insightface computes it (float32 ``arcface_dst`` times a Python float, then
    # ``+=`` in place), so the points are bit-identical to its ``dst`` before the float64 fit.
    template = ARCFACE_TEMPLATE.to(device=device)
    if size % 112 == 0:
        return (template * (size / 112.0)).to(dtype)
    ratio = size / 128.0
    template = template * ratio
    template[:, 0] += 8.0 * ratio
    return template.to(dtype)
