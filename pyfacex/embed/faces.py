"""Photos -> the model's input faces: aligned by five landmarks, or taken as aligned crops and resized.

One definition for the command line (per decoded file, in DataLoader workers) and for
:class:`~pyfacex.embed.FaceEmbedder` (batches of tensors), so both give a face the same pixels; the
alignment itself is :func:`pyfacex.data.landmarks.align_face`, the one evaluation aligns sidecar
faces with, so a threshold calibrated there holds here.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..align import five_points
from ..data.codec import resize_image
from ..data.landmarks import align_face

__all__ = ["prepare_faces", "to_uint8"]

# How far past [0, 1] float images may go (resampling overshoot) before they are taken for another range.
_FLOAT_SLACK = 1e-3


def to_uint8(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """uint8 images as they are; floating images in [0, 1] (pyfacex's :func:`~pyfacex.data.transforms.normalize`
    convention, torchvision's ``ToTensor``) as ``round(x · 255)``.

    Models see 8-bit pixels, as decoded from files, so a face gives the same embedding whether it
    comes as uint8 or as float (``ToTensor``'s k/255 round-trips exactly).

    Raises:
        TypeError naming ``name`` for another dtype; ValueError for floats outside [0, 1] (e.g. 0..255,
        or already normalised to [-1, 1]) or not finite.
    """
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise TypeError(f"{name}: expected uint8 or floating images in [0, 1], got {images.dtype}")
    if images.numel():
        if not bool(torch.isfinite(images).all()):
            raise ValueError(f"{name}: expected finite values, got NaN or inf")
        low, high = images.min().item(), images.max().item()
        if low < -_FLOAT_SLACK or high > 1 + _FLOAT_SLACK:
            raise ValueError(f"{name}: expected floating images in [0, 1], got values in [{low:g}, {high:g}] "
                             f"(pass uint8 for 0..255, or divide by 255)")
    return images.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def _check_image(image: torch.Tensor, name: str) -> None:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor (3, H, W), got {type(image).__name__}")
    if image.dim() != 3 or image.shape[0] != 3 or 0 in image.shape:
        raise ValueError(f"{name}: expected an RGB image (3, H, W) with H, W >= 1, got shape {tuple(image.shape)}")


def prepare_faces(images: torch.Tensor | Sequence[torch.Tensor], landmarks, image_size: int,
                  name: str = "images") -> torch.Tensor:
    """The model's input faces, uint8 RGB (B, 3, image_size, image_size) (B = 1 for one (3, H, W) image).

    Args:
        images: (B, 3, H, W) or one (3, H, W), uint8 or floating in [0, 1]; or a sequence of B
            (3, H_i, W_i) images of different sizes. Any device (the faces stay on it).
        landmarks: None (the images are aligned face crops, e.g. insightface's 112×112; resized to
            ``image_size`` when of another size, bilinear and antialiased), or (B, 5, 2) / (B, 68, 2)
            pixel x, y per image ((5, 2) / (68, 2) for one (3, H, W) image): each face is aligned by
            :func:`pyfacex.data.landmarks.align_face` (insightface's ``norm_crop``; a side with no
            ArcFace template, not a multiple of 112 or 128, is aligned at 112 and resized).
        image_size: the model's input side.
    Raises:
        TypeError / ValueError naming ``name`` (or ``landmarks``) and what was expected.
    """
    if isinstance(images, torch.Tensor):
        if images.dim() not in (3, 4):
            raise ValueError(f"{name}: expected (B, 3, H, W), (3, H, W) or a sequence of (3, H, W), got shape "
                             f"{tuple(images.shape)}")
        single = images.dim() == 3
        batch = images.unsqueeze(0) if single else images
        if batch.shape[1] != 3 or 0 in batch.shape[2:]:
            raise ValueError(f"{name}: expected RGB images (B, 3, H, W) with H, W >= 1, got shape "
                             f"{tuple(images.shape)}")
        device = images.device
    elif isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        single, batch, device = False, list(images), None
        for index, image in enumerate(batch):
            _check_image(image, f"{name}[{index}]")
    else:
        raise TypeError(f"{name}: expected a tensor or a sequence of tensors, got {type(images).__name__}")
    if len(batch) == 0:
        return torch.empty(0, 3, image_size, image_size, dtype=torch.uint8, device=device)
    size = (image_size, image_size)
    if landmarks is None:
        faces = resize_image(batch, size) if isinstance(batch, torch.Tensor) else \
            torch.stack([resize_image(image, size) for image in batch])
    else:
        points = five_points(landmarks)
        points = points.unsqueeze(0) if single else points
        if tuple(points.shape) != (len(batch), 5, 2):
            raise ValueError(f"landmarks: expected {len(batch)} sets of 5 or 68 points (x, y) for {len(batch)} "
                             f"image(s), got shape {tuple(torch.as_tensor(landmarks).shape)}")
        faces = torch.stack([align_face(image, points[i], image_size) for i, image in enumerate(batch)])
    return to_uint8(faces, name)
