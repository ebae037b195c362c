"""insightface verification ``.bin`` files (lfw.bin, cfp_fp.bin, agedb_30.bin, ...), read and written.

The file is a pickle of ``(bins, issame)``: ``bins`` a list of 2·P encoded images (JPEG or PNG
bytes), pair ``p`` being ``bins[2p]`` and ``bins[2p+1]``; ``issame`` P bools (a list, or in some
files a numpy bool array). insightface's older files are Python 2 pickles, whose ``str`` items load
as bytes with ``encoding="bytes"``.

A pickle can run any code while loading, so these files are read with a restricted unpickler that
resolves only the globals the format needs: ``list``, ``tuple``, ``bytes``, ``bytearray``, ``bool``,
``int``, ``float``, ``str``; ``_codecs.encode`` to latin-1 only (how protocol-2 pickles written by
Python 3 store bytes); and, for numpy arrays, ``numpy[._]core.multiarray._reconstruct``,
``numpy.ndarray`` and ``numpy.dtype`` restricted to bool and uint8. Anything else raises
:class:`UnsafePickleError` naming the file and the global.
"""
from __future__ import annotations

import builtins
import codecs
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .codec import decode_image, encode_jpeg

__all__ = ["UnsafePickleError", "VerificationBinError", "read_verification_bin", "write_verification_bin"]


class VerificationBinError(ValueError):
    """A ``.bin`` file that is not a pickle of (list of image bytes, bools) (message names the file)."""


class UnsafePickleError(VerificationBinError, pickle.UnpicklingError):
    """A ``.bin`` pickle that asks for a global outside the format's allow-list."""


def _latin1_encode(text, encoding="utf-8"):
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode to {encoding!r}; only latin-1 (pickled bytes) is allowed")
    return codecs.encode(text, "latin1")


def _bool_or_uint8_dtype(*args):
    dtype = np.dtype(*args)
    if dtype not in (np.dtype(np.bool_), np.dtype(np.uint8)):
        raise pickle.UnpicklingError(f"numpy dtype {dtype}; only bool and uint8 arrays are allowed")
    return dtype


_NUMPY_CORE = getattr(np, "_core", None) or np.core
_ALLOWED = {
    **{("builtins", name): getattr(builtins, name)
       for name in ("list", "tuple", "bytes", "bytearray", "bool", "int", "float", "str")},
    ("_codecs", "encode"): _latin1_encode,
    ("numpy.core.multiarray", "_reconstruct"): _NUMPY_CORE.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _NUMPY_CORE.multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _bool_or_uint8_dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str):
        # Python 2 pickles name the builtins module __builtin__ (the base class maps it, we replace it).
        key = ("builtins" if module == "__builtin__" else module, name)
        if key not in _ALLOWED:
            raise UnsafePickleError(f"{self.path}: the pickle asks for the global {module}.{name}, which a "
                                    f"verification .bin never holds; refusing to load it")
        return _ALLOWED[key]


def _load_pairs(path: Path) -> tuple[list[bytes], list[bool]]:
    if not path.is_file():
        raise FileNotFoundError(f"path: verification file {path} does not exist")
    with open(path, "rb") as f:
        try:
            content = _RestrictedUnpickler(f, path).load()
        except UnsafePickleError:
            raise
        except Exception as error:  # a damaged pickle raises many types; all mean "not this format"
            raise VerificationBinError(f"{path}: not a readable pickle: {type(error).__name__}: {error}") from error
    if not (isinstance(content, (tuple, list)) and len(content) == 2):
        raise VerificationBinError(f"{path}: expected a pickled pair (list of image bytes, issame), got "
                                   f"{type(content).__name__}")
    bins, issame = content
    if isinstance(issame, np.ndarray):
        issame = issame.reshape(-1).tolist()
    if not isinstance(bins, (list, tuple)) or not isinstance(issame, (list, tuple)):
        raise VerificationBinError(f"{path}: expected (list, list), "
                                   f"got ({type(bins).__name__}, {type(issame).__name__})")
    if any(not isinstance(same, (bool, np.bool_)) for same in issame):
        raise VerificationBinError(f"{path}: issame must hold bools only")
    if len(bins) != 2 * len(issame):
        raise VerificationBinError(f"{path}: {len(bins)} images for {len(issame)} pairs, expected {2 * len(issame)}")
    images = []
    for i, item in enumerate(bins):
        if isinstance(item, np.ndarray) and item.dtype == np.uint8:
            item = item.tobytes()
        if not isinstance(item, (bytes, bytearray)):
            raise VerificationBinError(f"{path}: image {i} is a {type(item).__name__}, expected encoded bytes")
        images.append(bytes(item))
    return images, [bool(same) for same in issame]


def read_verification_bin(path: str | os.PathLike, image_size: tuple[int, int] | None = None,
                          decode: bool = True) -> tuple[torch.Tensor | list[bytes], torch.Tensor]:
    """Read a verification ``.bin``.

    Args:
        path: the file.
        image_size: (height, width): resize every image that differs to it (bilinear, antialiased).
            Without it all images must have one size.
        decode: False returns the encoded bytes as stored (``image_size`` must then be None).
    Returns:
        ``(images, issame)``: images uint8 (2P, 3, H, W), pair p = rows 2p and 2p+1 (or a list of
        2P bytes objects); issame bool (P,).
    Raises:
        FileNotFoundError, UnsafePickleError (a global outside the allow-list), VerificationBinError
        (not the format), DecodeError (an image that does not decode; names the file and image).
    """
    path = Path(path)
    if not decode and image_size is not None:
        raise ValueError("image_size: cannot resize with decode=False (the images stay encoded)")
    encoded, issame = _load_pairs(path)
    same = torch.tensor(issame, dtype=torch.bool)
    if not decode:
        return encoded, same
    size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
    images = None
    for i, data in enumerate(encoded):
        image = decode_image(data, source=f"{path} image {i}", size=size)
        if images is None:  # filled in place: stacking would hold every image twice
            images = torch.empty((len(encoded), *image.shape), dtype=torch.uint8)
        if image.shape != images.shape[1:]:
            raise VerificationBinError(f"{path}: image {i} is {tuple(image.shape)}, image 0 is "
                                       f"{tuple(images.shape[1:])}; pass image_size=(H, W) to resize")
        images[i] = image
    if images is None:
        images = torch.empty((0, 3, *(size or (0, 0))), dtype=torch.uint8)
    return images, same


def write_verification_bin(path: str | os.PathLike, images: torch.Tensor | Sequence, issame, *,
                           quality: int = 95, protocol: int = 4) -> None:
    """Write a verification ``.bin`` as insightface does: pickle of (list of bytes, list of bool).

    Args:
        path: the file to write (replaced atomically: written beside it, then renamed).
        images: 2P images: uint8 (2P, 3, H, W), or a sequence of uint8 (3, H, W) tensors (JPEG-encoded
            at ``quality``) or of encoded bytes (stored as they are).
        issame: P bools (sequence or bool tensor).
        quality: JPEG quality for tensors.
        protocol: pickle protocol (2 makes files Python 2 can read).
    """
    same = torch.as_tensor(issame)
    if same.dtype != torch.bool or same.dim() != 1:
        raise ValueError(f"issame: expected P bools (1-D), got {same.dtype} {tuple(same.shape)}")
    items = list(images.unbind(0)) if isinstance(images, torch.Tensor) else list(images)
    if len(items) != 2 * len(same):
        raise ValueError(f"images: expected 2 * {len(same)} = {2 * len(same)} images for {len(same)} pairs, "
                         f"got {len(items)}")
    bins = [bytes(item) if isinstance(item, (bytes, bytearray, memoryview)) else encode_jpeg(item, quality)
            for item in items]
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        pickle.dump((bins, same.tolist()), f, protocol=protocol)
    os.replace(partial, path)
