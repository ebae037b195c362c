"""EXIF orientation: the tag read from JPEG (our parser) and other formats (Pillow), the 8 ways applied
as Pillow's exif_transpose does, and decode_image applying it only when asked."""
import io
import struct

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from pyfacex.data.codec import decode_image, encode_jpeg
from pyfacex.data.exif import apply_orientation, read_orientation

# Pillow's transposition that turns a photo *displayed* upright into what a camera stores with tag o
# (the inverse of exif_transpose's: 6 and 8 swap, the others are their own inverse).
_STORE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
          5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_270}


def _scene(height=96, width=128) -> np.ndarray:
    """An upright picture with no symmetry: 16×16 blocks of distinct colours (JPEG keeps them nearly
    exact), so any wrong flip or rotation moves whole blocks."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, size=(height // 16, width // 16, 3), dtype=np.uint8)
    return blocks.repeat(16, 0).repeat(16, 1)


def _stored(scene: np.ndarray, orientation: int, fmt: str = "JPEG", exif_bytes: bytes | None = None) -> bytes:
    image = Image.fromarray(scene)
    if orientation in _STORE:
        image = image.transpose(_STORE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    options = {"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}   # 4:4:4: colour edges stay sharp
    image.save(buffer, fmt, exif=exif_bytes if exif_bytes is not None else exif, **options)
    return buffer.getvalue()


def _mad(a: torch.Tensor, b) -> float:
    return (a.float() - torch.from_numpy(np.array(b)).permute(2, 0, 1).float()).abs().mean().item()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_comes_out_upright(orientation):
    scene = _scene()
    data = _stored(scene, orientation)
    assert read_orientation(data) == orientation
    upright = decode_image(data, source="x.jpg", exif_orientation=True)
    assert tuple(upright.shape) == (3, 96, 128)
    assert _mad(upright, scene) < 2.0            # a wrong orientation moves 16-pixel blocks: ~80 grey levels
    with Image.open(io.BytesIO(data)) as image:    # Pillow's exif_transpose as the oracle
        assert _mad(upright, ImageOps.exif_transpose(image).convert("RGB")) < 2.0
    stored = decode_image(data, source="x.jpg")   # datasets: the stored pixels, as before
    assert tuple(stored.shape) == ((3, 96, 128) if orientation <= 4 else (3, 128, 96))
    if orientation != 1:
        assert _mad(stored, np.asarray(Image.fromarray(scene).transpose(_STORE[orientation]))) < 2.0


def test_the_issues_orientation_6_photo():
    # a phone photo stored 120 wide and 100 high, tagged "rotate 90° clockwise to display"
    scene = _scene(height=128, width=96)                   # what the viewer shows: portrait
    data = _stored(scene, 6)
    assert tuple(decode_image(data).shape) == (3, 96, 128)          # stored: landscape
    assert tuple(decode_image(data, exif_orientation=True).shape) == (3, 128, 96)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_other_formats_through_pillow(fmt):
    scene = _scene()
    data = _stored(scene, 8, fmt=fmt)
    assert read_orientation(data) == 8
    upright = decode_image(data, exif_orientation=True)
    tolerance = 0.0 if fmt == "PNG" else 6.0                   # WebP is lossy by default
    assert _mad(upright, scene) <= tolerance
    assert tuple(decode_image(data).shape) == (3, 128, 96)


def _tiff(order: str, entries: list[tuple[int, int, int, int]]) -> bytes:
    """A TIFF header + IFD0 with (tag, type, count, value) entries, byte order "<" (II) or ">" (MM)."""
    head = (b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, 8)
    body = struct.pack(order + "H", len(entries))
    for tag, kind, count, value in entries:
        body += struct.pack(order + "HHI", tag, kind, count) + struct.pack(order + "HH", value, 0)
    return head + body + struct.pack(order + "I", 0)


def _jpeg_with_segments(*segments: tuple[int, bytes]) -> bytes:
    """A real JPEG with marker segments (marker, payload) inserted right after SOI."""
    jpeg = encode_jpeg(torch.from_numpy(_scene()).permute(2, 0, 1).contiguous())
    extra = b"".join(b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload
                     for marker, payload in segments)
    return jpeg[:2] + extra + jpeg[2:]


def test_parser_reads_both_byte_orders_and_skips_other_app1_segments():
    xmp = (0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>")
    for order in "<>":
        tiff = _tiff(order, [(0x010F, 2, 4, 0), (0x0112, 3, 1, 3)])   # Make first, then Orientation
        data = _jpeg_with_segments((0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"), xmp,
                                   (0xE1, b"Exif\x00\x00" + tiff))
        assert read_orientation(data) == 3
        assert read_orientation(memoryview(data)) == 3
        # (encode_jpeg subsamples chroma 4:2:0: colour edges blur; a wrong orientation costs ~80)
        assert _mad(decode_image(data, exif_orientation=True), _scene()[::-1, ::-1]) < 8.0


@pytest.mark.parametrize("payload", [
    b"Exif\x00\x00" + _tiff("<", [(0x0112, 3, 1, 9)]),               # out of range
    b"Exif\x00\x00" + _tiff("<", [(0x0112, 4, 1, 6)]),               # wrong field type
    b"Exif\x00\x00" + _tiff("<", [(0x0112, 3, 1, 6)])[:12],          # entry cut off
    b"Exif\x00\x00II\x2a\x00\xff\xff\xff\x7f",                         # IFD offset past the end
    b"Exif\x00\x00XX\x2a\x00\x08\x00\x00\x00",                         # no byte order
    b"Exif\x00\x00",                                                   # empty TIFF
])
def test_malformed_exif_counts_as_upright_and_the_photo_still_decodes(payload):
    data = _jpeg_with_segments((0xE1, payload))
    assert read_orientation(data) == 1
    assert tuple(decode_image(data, exif_orientation=True).shape) == (3, 96, 128)


def test_segment_length_past_the_end_and_non_images():
    jpeg = encode_jpeg(torch.zeros(3, 16, 16, dtype=torch.uint8))
    assert read_orientation(jpeg[:2] + b"\xff\xe1\xff\xff" + b"Exif") == 1
    assert read_orientation(jpeg) == 1           # no EXIF at all
    assert read_orientation(b"not an image") == 1
    assert read_orientation(b"") == 1


def test_apply_orientation_on_batches_and_bad_tags():
    image = torch.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    for orientation in range(1, 9):
        out = apply_orientation(image, orientation)
        for b in range(2):       # leading dims are carried along: the same as each image alone
            assert torch.equal(out[b], apply_orientation(image[b], orientation))
        oracle = ImageOps.exif_transpose(_tagged(image[0, 0], orientation))
        assert torch.equal(out[0, 0], torch.from_numpy(np.asarray(oracle).astype(np.int64)))
    for bad in (0, 9, 1.0, True):
        with pytest.raises(ValueError, match="orientation"):
            apply_orientation(image, bad)
    with pytest.raises(ValueError, match="image"):
        apply_orientation(torch.zeros(5), 2)


def _tagged(plane: torch.Tensor, orientation: int) -> Image.Image:
    """A greyscale Pillow image of a small integer plane carrying an EXIF orientation tag."""
    image = Image.fromarray(plane.numpy().astype(np.uint8), mode="L")
    exif = image.getexif()
    exif[0x0112] = orientation
    return image
