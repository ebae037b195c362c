"""EXIF orientation: which of the 8 ways a camera stored a photo, and turning the pixels upright.

Phones store the sensor's pixels as read and put the way to display them in the EXIF tag 0x0112
(Orientation), 1..8. Viewers and ``cv2.imread`` apply it, so a face detector run on such a photo
gives landmarks in the *displayed* frame; the decoders (libjpeg-turbo, Pillow) return the stored
pixels. :func:`apply_orientation` maps the stored pixels to the displayed ones, as Pillow's
``ImageOps.exif_transpose`` does:

====  =========================================  =====================================
tag   stored pixels, to be displayed             applied here (on (..., H, W))
====  =========================================  =====================================
1     upright                                    nothing
2     mirrored left-right                        flip W
3     rotated 180°                               flip H and W
4     mirrored top-bottom                        flip H
5     transposed (mirrored about the diagonal)   swap H and W
6     rotated 90° counter-clockwise              rotate 90° clockwise
7     transversed (about the anti-diagonal)      swap H and W, then flip H and W
8     rotated 90° clockwise                      rotate 90° counter-clockwise
====  =========================================  =====================================

JPEG's tag is read here from the APP1 ``Exif`` segment (a few hundred bytes before the scan, no
decoding); other formats that carry EXIF (PNG ``eXIf``, WebP, TIFF) through Pillow. A missing,
malformed or out-of-range tag counts as 1 (upright), as viewers treat it: metadata a camera wrote
badly must not make a photo unreadable. Every offset is checked against the data before it is used.
"""
from __future__ import annotations

import io

import torch

__all__ = ["ORIENTATION_TAG", "UPRIGHT", "read_orientation", "orientation_of_pillow_image", "apply_orientation"]

ORIENTATION_TAG = 0x0112
"""The EXIF (TIFF) tag number of Orientation."""

UPRIGHT = 1
"""The orientation of a photo whose stored pixels are displayed as they are (and of one without a tag)."""

_EXIF_HEADER = b"Exif\x00\x00"
_SHORT = 3   # TIFF field type of Orientation: unsigned 16-bit
# markers without a length field: TEM, RST0..7 (SOI is skipped before the loop)
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_SOS, _EOI, _APP1 = 0xDA, 0xD9, 0xE1


def _valid(value: int) -> int:
    return value if 1 <= value <= 8 else UPRIGHT


def _tiff_orientation(tiff) -> int:
    """The Orientation of IFD0 of a TIFF structure (the body of an APP1 Exif segment), 1 when absent."""
    if len(tiff) < 8 or bytes(tiff[:2]) not in (b"II", b"MM"):
        return UPRIGHT
    order = "little" if bytes(tiff[:2]) == b"II" else "big"
    if int.from_bytes(tiff[2:4], order) != 42:
        return UPRIGHT
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return UPRIGHT
    entries = int.from_bytes(tiff[ifd:ifd + 2], order)
    for index in range(entries):
        entry = ifd + 2 + 12 * index
        if entry + 12 > len(tiff):   # an entry count larger than the segment: read what is there
            break
        if int.from_bytes(tiff[entry:entry + 2], order) == ORIENTATION_TAG:
            kind = int.from_bytes(tiff[entry + 2:entry + 4], order)
            count = int.from_bytes(tiff[entry + 4:entry + 8], order)
            if kind != _SHORT or count != 1:
                return UPRIGHT
            # a single SHORT sits in the first two bytes of the 4-byte value field
            return _valid(int.from_bytes(tiff[entry + 8:entry + 10], order))
    return UPRIGHT


def _jpeg_orientation(data) -> int:
    """The Orientation of a JPEG's APP1 Exif segment: the marker segments are walked up to the scan."""
    position, size = 2, len(data)
    while position + 4 <= size:
        if data[position] != 0xFF:
            return UPRIGHT                      # not a marker where one must be: a damaged header
        marker = data[position + 1]
        if marker == 0xFF:                      # fill byte before a marker
            position += 1
            continue
        if marker in _STANDALONE:
            position += 2
            continue
        if marker in (_SOS, _EOI):              # metadata comes before the scan
            return UPRIGHT
        length = int.from_bytes(data[position + 2:position + 4], "big")   # counts itself, not the marker
        end = position + 2 + length
        if length < 2 or end > size:
            return UPRIGHT
        body = data[position + 4:end]
        if marker == _APP1 and bytes(body[:6]) == _EXIF_HEADER:   # (XMP is an APP1 too)
            return _tiff_orientation(body[6:])
        position = end
    return UPRIGHT


def orientation_of_pillow_image(image) -> int:
    """The EXIF Orientation of an opened ``PIL.Image`` (1 when it has none or a bad one)."""
    try:
        value = image.getexif().get(ORIENTATION_TAG, UPRIGHT)
    except Exception:   # Pillow raises several types on malformed EXIF; a bad tag counts as upright
        return UPRIGHT
    return _valid(value) if isinstance(value, int) else UPRIGHT


def read_orientation(data: bytes | memoryview) -> int:
    """The EXIF Orientation (1..8) of encoded image bytes; 1 when there is none or it is malformed.

    JPEG is parsed here (the marker segments before the scan, nothing decoded); other formats are
    opened lazily with Pillow (header only). Bytes that are no image give 1 too: decoding them
    reports the error.
    """
    if len(data) >= 2 and bytes(data[:2]) == b"\xff\xd8":
        return _jpeg_orientation(memoryview(data))
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return orientation_of_pillow_image(image)
    except Exception:
        return UPRIGHT


def apply_orientation(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Turn stored pixels into displayed ones for an EXIF ``orientation`` (table in the module docstring).

    Args:
        image: (..., H, W), e.g. RGB (3, H, W), any dtype and device.
        orientation: 1..8.
    Returns:
        (..., H, W) for 1-4, (..., W, H) for 5-8; a contiguous tensor.
    Raises:
        ValueError naming ``orientation`` when it is not 1..8; ValueError naming ``image`` with fewer than 2 dims.
    """
    if isinstance(orientation, bool) or not isinstance(orientation, int) or not 1 <= orientation <= 8:
        raise ValueError(f"orientation: expected an EXIF orientation 1..8, got {orientation!r}")
    if not isinstance(image, torch.Tensor) or image.dim() < 2:
        raise ValueError(f"image: expected a tensor (..., H, W), got {getattr(image, 'shape', type(image).__name__)}")
    h, w = image.dim() - 2, image.dim() - 1
    if orientation >= 5:   # 5-8 swap the axes first; 5 is the swap alone
        image = image.transpose(h, w)
    flips = {1: (), 2: (w,), 3: (h, w), 4: (h,), 5: (), 6: (w,), 7: (h, w), 8: (h,)}[orientation]
    return (image.flip(flips) if flips else image).contiguous()
