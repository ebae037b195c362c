"""Similarity transforms from point correspondences (Umeyama), insightface's ``estimate_norm``, and
the affine algebra to move points between a photo and its aligned crop.

Matrices are (..., 2, 3) affine maps in the convention of OpenCV and insightface: ``M @ [x, y, 1]``
takes a point of the source image to the crop, with pixel centres at integer coordinates.
"""
from __future__ import annotations

import torch

from ._checks import as_matrix, as_points, batch_index
from .template import arcface_template

__all__ = ["estimate_similarity", "estimate_norm", "invert_affine", "transform_points"]


def estimate_similarity(src, dst) -> torch.Tensor:
    """The least-squares similarity (rotation, uniform scale, translation; no reflection) taking
    ``src`` to ``dst``: Umeyama's estimate, as scikit-image's ``SimilarityTransform.estimate``.

    In 2-D Umeyama's SVD solution has a closed form: with points as complex numbers and the means
    removed, the rotation-and-scale is ``a = Σ conj(s)·d / Σ|s|²`` (Umeyama's ``trace(DS) / σ²_src``
    with the reflection guard built in, since a complex factor is never a reflection). No SVD, so it
    batches and runs on any device, and it is exact where Umeyama's rank-deficient branches are
    (collinear points) too.

    Args:
        src: (..., N, 2) points, N >= 2 not all coincident, e.g. detected landmarks.
        dst: (..., N, 2) points broadcastable with ``src`` (e.g. one (N, 2) template for a batch).
    Returns:
        (..., 2, 3) float64 matrices M with ``M @ [x, y, 1]`` ≈ the matching ``dst`` point.
    Raises:
        TypeError / ValueError naming ``src`` or ``dst`` (shape, non-finite or coincident points).
    """
    return _fit(as_points(src, "src"), as_points(dst, "dst"), "src")


def _fit(src: torch.Tensor, dst: torch.Tensor, src_name: str) -> torch.Tensor:
    """:func:`estimate_similarity` on checked points; errors about ``src`` name it ``src_name``."""
    src, dst = src.to(torch.float64), dst.to(device=src.device, dtype=torch.float64)
    if src.shape[-2] != dst.shape[-2]:
        raise ValueError(f"dst: expected as many points as src ({src.shape[-2]}), got shape {tuple(dst.shape)}")
    if src.shape[-2] < 2:
        raise ValueError(f"{src_name}: expected at least 2 points to fix a similarity, "
                         f"got shape {tuple(src.shape)}")
    try:
        torch.broadcast_shapes(src.shape[:-2], dst.shape[:-2])
    except RuntimeError as error:
        raise ValueError(f"dst: batch shape {tuple(dst.shape[:-2])} does not broadcast with src's "
                         f"{tuple(src.shape[:-2])}") from error
    src_mean, dst_mean = src.mean(-2, keepdim=True), dst.mean(-2, keepdim=True)
    s, d = src - src_mean, dst - dst_mean
    n = src.shape[-2]
    variance = (s * s).sum((-2, -1)) / n                                  # σ²_src, summed over x and y
    # Coincident points have zero spread; compare with the coordinates' magnitude, since the mean of
    # equal numbers can differ from them in the last bit.
    flat = variance <= (1e-12 * (1.0 + src.abs().flatten(-2).amax(-1))) ** 2
    if flat.any():
        raise ValueError(f"{src_name}: expected points that are not all coincident, got coincident points"
                         f"{batch_index(flat)}")
    real = (s * d).sum((-2, -1)) / n                                      # Re Σ conj(s)·d / N
    imag = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(-1) / n    # Im Σ conj(s)·d / N
    a, b = real / variance, imag / variance                               # scale·cos θ, scale·sin θ
    linear = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)       # (..., 2, 2)
    shift = dst_mean.squeeze(-2) - (linear @ src_mean.transpose(-1, -2)).squeeze(-1)
    return torch.cat([linear, shift.unsqueeze(-1)], -1)


def estimate_norm(landmarks, image_size: int = 112) -> torch.Tensor:
    """insightface's ``face_align.estimate_norm``: the similarity taking five landmarks onto the
    ArcFace template of an ``image_size`` crop.

    Args:
        landmarks: (..., 5, 2) pixel x, y in the photo, in insightface's order: image-left eye,
            image-right eye, nose tip, image-left mouth corner, image-right mouth corner (see
            :func:`~pyfacex.align.five_points` for 68-point landmarks).
        image_size: the crop side, a positive multiple of 112 or 128 (see :func:`arcface_template`).
    Returns:
        (..., 2, 3) float64 matrices from photo pixels to crop pixels (``cv2.warpAffine``'s ``M``).
    Raises:
        TypeError / ValueError naming ``landmarks`` or ``image_size``.
    """
    points = as_points(landmarks, "landmarks", count=5)
    return _fit(points, arcface_template(image_size, device=points.device), "landmarks")


def invert_affine(matrix) -> torch.Tensor:
    """The inverse of affine maps: crop -> photo for the matrices of :func:`estimate_norm`.

    Args:
        matrix: (..., 2, 3) invertible affine matrices.
    Returns:
        (..., 2, 3) in ``matrix``'s floating dtype (integers give float64).
    Raises:
        ValueError naming ``matrix`` for a shape or a singular (zero-scale) map.
    """
    m = as_matrix(matrix, "matrix")
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    size = m[..., :2].abs().flatten(-2).amax(-1)
    singular = det.abs() <= 1e-12 * size * size
    if singular.any():
        raise ValueError(f"matrix: expected invertible maps, got a singular one{batch_index(singular)}")
    inverse = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2) / det[..., None, None]
    shift = -(inverse @ m[..., 2:]).squeeze(-1)
    return torch.cat([inverse, shift.unsqueeze(-1)], -1)


def transform_points(points, matrix) -> torch.Tensor:
    """Apply affine maps to points: ``M @ [x, y, 1]`` for each point.

    With ``invert_affine(estimate_norm(landmarks))`` this takes anything found in the aligned crop
    (landmarks, boxes' corners) back onto the photo, to draw it there.

    Args:
        points: (..., N, 2) pixel x, y.
        matrix: (..., 2, 3), batch dimensions broadcastable with the points'.
    Returns:
        (..., N, 2) in the promoted floating dtype of the two, on ``points``' device.
    Raises:
        TypeError / ValueError naming ``points`` or ``matrix``.
    """
    p = as_points(points, "points")
    m = as_matrix(matrix, "matrix").to(p.device)
    dtype = torch.promote_types(p.dtype, m.dtype)
    p, m = p.to(dtype), m.to(dtype)
    try:
        return p @ m[..., :2].transpose(-1, -2) + m[..., None, :, 2]
    except RuntimeError as error:
        raise ValueError(f"matrix: batch shape {tuple(m.shape[:-2])} does not broadcast with points' "
                         f"{tuple(p.shape[:-2])}") from error
