"""Image bytes <-> uint8 tensors: JPEG through libjpeg-turbo (simplejpeg), everything else through Pillow.

Measured on this project's 2-core Xeon, one 112×112 JPEG (quality 95), one thread:

    decoder                      µs / image
    simplejpeg.decode_jpeg          57
    cv2.imdecode                    57
    PIL.Image.open + convert       167

simplejpeg is as fast as OpenCV without OpenCV's 60 MB wheel, is released for every CPython on
PyPI and wraps libjpeg-turbo directly, so JPEG goes there; PNG, BMP, WebP and the rest (image
folders may hold any of them) go through Pillow. Images are RGB uint8 tensors (3, H, W), the
layout the transforms and models take.

EXIF orientation (:mod:`.exif`) is applied on request (``exif_orientation=True``): users' own photos
(``pyfacex embed`` / ``compare``, :class:`pyfacex.FaceEmbedder`) turn it on; datasets are read with the
stored pixels as they always were, so training and evaluation are unchanged.
"""
from __future__ import annotations

import io

import numpy as np
import simplejpeg
import torch
import torch.nn.functional as F
from PIL import Image

from .exif import UPRIGHT, apply_orientation, orientation_of_pillow_image, read_orientation

__all__ = ["DecodeError", "decode_image", "resize_image", "encode_jpeg", "encode_png"]

_JPEG_MAGIC = b"\xff\xd8"


class DecodeError(ValueError):
    """Bytes that are not an image this library can decode (raised with where they came from)."""


def decode_image(data: bytes | memoryview, source: str = "<bytes>", size: tuple[int, int] | None = None,
                 exif_orientation: bool = False) -> torch.Tensor:
    """Decode JPEG/PNG/... bytes to an RGB uint8 tensor (3, H, W).

    Args:
        data: the encoded image.
        source: where the bytes came from (file and offset), named in the error if they do not decode.
        size: (H, W) to resize to when the image has another size (:func:`resize_image`), after the
            orientation is applied.
        exif_orientation: turn the stored pixels upright by the EXIF Orientation tag, as viewers and
            ``cv2.imread`` do (:func:`~pyfacex.data.exif.apply_orientation`; e.g. a phone's
            orientation-6 photo stored 120 wide and 100 high comes out 100 wide and 120 high). Off by
            default: datasets store their pixels as meant.
    Raises:
        DecodeError: the bytes are empty, truncated or not an image.
    """
    if len(data) == 0:
        raise DecodeError(f"{source}: empty image payload")
    orientation = UPRIGHT
    try:
        if bytes(data[:2]) == _JPEG_MAGIC:
            array = simplejpeg.decode_jpeg(data, colorspace="RGB")
            if exif_orientation:
                orientation = read_orientation(data)
        else:
            with Image.open(io.BytesIO(data)) as image:
                array = np.array(image.convert("RGB"))  # a writable copy
                if exif_orientation:
                    orientation = orientation_of_pillow_image(image)
    except Exception as error:  # every decoder has its own exception types
        raise DecodeError(f"{source}: cannot decode image ({len(data)} bytes): {error}") from error
    image = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    if orientation != UPRIGHT:
        image = apply_orientation(image, orientation)
    if size is not None:
        image = resize_image(image, size)
    return image


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (..., C, H, W) images to ``size`` = (H', W'): bilinear, antialiased when shrinking.

    uint8 on the CPU is resized on the uint8 pixels (torch's fast path, what datasets have always
    been read with); uint8 elsewhere goes through float32 and back (rounded, clamped); floating
    images keep their dtype. Images of the requested size come back as they are.
    """
    size = (int(size[0]), int(size[1]))
    if tuple(image.shape[-2:]) == size:
        return image
    batch = image.reshape(-1, *image.shape[-3:])
    if batch.dtype == torch.uint8 and batch.device.type != "cpu":
        out = F.interpolate(batch.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    else:
        out = F.interpolate(batch, size=size, mode="bilinear", antialias=True, align_corners=False)
    return out.reshape(*image.shape[:-2], *size)


def _hwc(image: torch.Tensor, name: str = "image") -> np.ndarray:
    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"{name}: expected a uint8 tensor (3, H, W) or (1, H, W), got "
                         f"{image.dtype} {tuple(image.shape)}")
    return np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())


def encode_jpeg(image: torch.Tensor, quality: int = 95) -> bytes:
    """Encode an RGB (3, H, W) or grey (1, H, W) uint8 tensor as JPEG bytes (4:2:0 like insightface's)."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality: expected 1..100, got {quality}")
    array = _hwc(image)
    colorspace = "RGB" if array.shape[2] == 3 else "GRAY"
    return simplejpeg.encode_jpeg(array, quality=int(quality), colorspace=colorspace,
                                  colorsubsampling="420" if colorspace == "RGB" else "Gray")


def encode_png(image: torch.Tensor) -> bytes:
    """Encode an RGB (3, H, W) or grey (1, H, W) uint8 tensor as lossless PNG bytes."""
    array = _hwc(image)
    buffer = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(buffer, format="PNG")
    return buffer.getvalue()
