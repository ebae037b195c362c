"""Five-point face alignment as insightface does it, in pure torch: batched, on any device.

A face is aligned by the similarity transform (rotation, uniform scale, translation) that takes its
five landmarks (eye centres, nose tip, mouth corners) onto insightface's ArcFace template, and the
photo is warped by it into an ``image_size`` crop with bilinear interpolation and a black border:

>>> import torch
>>> from pyfacex.align import ARCFACE_TEMPLATE, estimate_norm, norm_crop, invert_affine, transform_points
>>> photo = torch.zeros(3, 240, 320, dtype=torch.uint8)                   # uint8 RGB (3, H, W)
>>> landmarks = ARCFACE_TEMPLATE * 1.5 + torch.tensor([80.0, 40.0])      # (5, 2) pixel x, y
>>> norm_crop(photo, landmarks).shape                                    # (3, 112, 112)
torch.Size([3, 112, 112])
>>> M = estimate_norm(landmarks)                                          # (2, 3): photo -> crop
>>> back = transform_points(ARCFACE_TEMPLATE, invert_affine(M))           # crop -> photo, to draw
>>> bool(torch.allclose(back.float(), landmarks, atol=1e-3))
True

Compatibility: :func:`estimate_norm` equals insightface's ``face_align.estimate_norm`` (scikit-image
``SimilarityTransform``) and :func:`norm_crop` its ``norm_crop`` (``cv2.warpAffine``) up to OpenCV's
fixed-point rounding; :func:`five_points` is insightface's 68 -> 5 reduction. Neither OpenCV nor
scikit-image is needed.
"""
from .landmarks import five_points
from .similarity import estimate_norm, estimate_similarity, invert_affine, transform_points
from .template import ARCFACE_TEMPLATE, arcface_template
from .warp import norm_crop, warp_affine

__all__ = ["ARCFACE_TEMPLATE", "arcface_template", "estimate_similarity", "estimate_norm", "invert_affine",
           "transform_points", "warp_affine", "norm_crop", "five_points"]
