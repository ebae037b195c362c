"""68-point (iBUG / 300-W) landmarks -> the five points insightface aligns by."""
from __future__ import annotations

import torch

from ._checks import as_points, check_finite

__all__ = ["five_points"]


def five_points(landmarks) -> torch.Tensor:
    """The five alignment points of 68-point iBUG landmarks, as insightface derives them.

    insightface's IJB evaluations (``recognition/arcface_torch/eval_ijbc.py``, ``vpl/eval_ijbc.py``,
    ``partial_fc/mxnet/evaluation/align_ijb.py``) and its JMLR dataset take each eye centre as the
    midpoint of the eye's two corners (36 and 39, 42 and 45), the nose tip 30 and the mouth corners
    48 and 54. The corners, not the mean of the six lid points: the lids move as the eye opens or
    closes and take that mean with them (by up to 0.6 pixel at 112 in the synthetic world), the
    corners stay; their midpoint is also the synthetic face model's own eye centre. Only the points
    used must be finite (a detector's NaN elsewhere is ignored). Five-point input is returned as is,
    so a caller may pass whichever it holds.

    Args:
        landmarks: (..., 68, 2) pixel x, y in iBUG order (0-16 jaw, 36-41 the image-left eye, ...),
            or (..., 5, 2) points already in insightface's order.
    Returns:
        (..., 5, 2): image-left eye, image-right eye, nose tip, image-left and image-right mouth
        corner, in ``landmarks``' floating dtype (integers give float64).
    Raises:
        TypeError / ValueError naming ``landmarks``.
    """
    points = as_points(landmarks, "landmarks", count=(68, 5), finite=False)
    if points.shape[-2] == 68:
        points = torch.stack([(points[..., 36, :] + points[..., 39, :]) / 2,
                              (points[..., 42, :] + points[..., 45, :]) / 2,
                              points[..., 30, :], points[..., 48, :], points[..., 54, :]], -2)
    check_finite(points, "landmarks")
    return points
