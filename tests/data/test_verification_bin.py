"""Verification .bin files: round trip, Python 2 pickles, the restricted unpickler."""
from __future__ import annotations

import io
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from pyfacex.data.codec import DecodeError, encode_png
from pyfacex.data.verification_bin import (
    UnsafePickleError,
    VerificationBinError,
    read_verification_bin,
    write_verification_bin,
)


def pairs(p: int, size: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (2 * p, 3, size, size), dtype=torch.uint8, generator=gen)
    issame = torch.rand(p, generator=gen) < 0.5
    return images, issame


class Py2Pickler(pickle._Pickler):
    """Writes what Python 2's pickle wrote: str and bytes as BINSTRING (a Python 2 ``str``), which
    Python 3 loads as bytes only with ``encoding="bytes"``; builtins under ``__builtin__``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def py2_dumps(obj) -> bytes:
    out = io.BytesIO()
    Py2Pickler(out, protocol=2).dump(obj)
    # numpy 2 names its reconstructor numpy._core; numpy 1 (the one Python 2 had) numpy.core.
    return out.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def test_round_trip_png_bytes_exact(tmp_path):
    images, issame = pairs(3)
    write_verification_bin(tmp_path / "x.bin", [encode_png(image) for image in images], issame)
    read, same = read_verification_bin(tmp_path / "x.bin")
    assert read.dtype == torch.uint8 and torch.equal(read, images) and torch.equal(same, issame)
    # insightface's own loader sees (list of bytes, list of bools)
    bins, issame_list = pickle.loads((tmp_path / "x.bin").read_bytes())
    assert [type(b) for b in bins] == [bytes] * 6 and issame_list == issame.tolist()


def test_tensors_are_stored_as_jpeg(tmp_path):
    images = torch.full((2, 3, 16, 16), 77, dtype=torch.uint8)
    write_verification_bin(tmp_path / "x.bin", images, [True], quality=90)
    encoded, same = read_verification_bin(tmp_path / "x.bin", decode=False)
    assert all(data[:2] == b"\xff\xd8" for data in encoded) and same.tolist() == [True]
    assert (read_verification_bin(tmp_path / "x.bin")[0].int() - 77).abs().max() <= 2


def test_protocol2_pickle_with_bytes_loads(tmp_path):
    images, issame = pairs(2, seed=1)
    bins = [encode_png(image) for image in images]
    bins[3] = bytearray(bins[3])
    # Python 3 writes bytes under protocol 2 as _codecs.encode(str, "latin1") and bytearray as
    # __builtin__.bytearray: the allow-list has both.
    content = pickle.dumps((bins, issame.tolist()), protocol=2)
    assert b"c_codecs\nencode" in content and b"c__builtin__\nbytearray" in content
    (tmp_path / "p2.bin").write_bytes(content)
    read, same = read_verification_bin(tmp_path / "p2.bin")
    assert torch.equal(read, images) and torch.equal(same, issame)


def test_python2_pickle_with_numpy_bool_issame_loads(tmp_path):
    images, issame = pairs(2, seed=2)
    content = py2_dumps(([encode_png(image) for image in images], issame.numpy()))
    assert b"numpy.core.multiarray\n_reconstruct" in content and pickle.BINSTRING in content
    with pytest.raises(UnicodeDecodeError):  # what insightface's first, ASCII attempt meets
        pickle.loads(content)
    (tmp_path / "py2.bin").write_bytes(content)
    read, same = read_verification_bin(tmp_path / "py2.bin")
    assert torch.equal(read, images) and torch.equal(same, issame)


def test_write_protocol_2_is_python2_readable_format(tmp_path):
    images, issame = pairs(1)
    write_verification_bin(tmp_path / "x.bin", images, issame, protocol=2)
    assert (tmp_path / "x.bin").read_bytes()[:2] == b"\x80\x02"
    assert read_verification_bin(tmp_path / "x.bin")[0].shape == (2, 3, 8, 8)


class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_forbidden_global_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.bin").write_bytes(pickle.dumps(([_RunsCommand(marker)], []), protocol=4))
    with pytest.raises(UnsafePickleError, match=r"evil.bin: the pickle asks for the global posix.system"):
        read_verification_bin(tmp_path / "evil.bin")
    assert not marker.exists()


def test_numpy_object_arrays_are_refused(tmp_path):
    (tmp_path / "obj.bin").write_bytes(pickle.dumps(([], np.array([], dtype=object)), protocol=2))
    with pytest.raises(VerificationBinError, match="only bool and uint8"):
        read_verification_bin(tmp_path / "obj.bin")


def test_resize_to_image_size_and_mixed_sizes(tmp_path):
    bins = [encode_png(torch.full((3, 10, 12), 50, dtype=torch.uint8)),
            encode_png(torch.full((3, 8, 8), 200, dtype=torch.uint8))]
    write_verification_bin(tmp_path / "m.bin", bins, [False])
    with pytest.raises(VerificationBinError, match=r"image 1 is \(3, 8, 8\), image 0 is \(3, 10, 12\)"):
        read_verification_bin(tmp_path / "m.bin")
    images, _ = read_verification_bin(tmp_path / "m.bin", image_size=(8, 8))
    assert images.shape == (2, 3, 8, 8) and images[0].unique().tolist() == [50]
    assert images[1].unique().tolist() == [200]


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.bin"):
        read_verification_bin(tmp_path / "nope.bin")
    images, issame = pairs(2)
    bins = [encode_png(image) for image in images]
    (tmp_path / "count.bin").write_bytes(pickle.dumps((bins[:3], issame.tolist())))
    with pytest.raises(VerificationBinError, match=r"count.bin: 3 images for 2 pairs, expected 4"):
        read_verification_bin(tmp_path / "count.bin")
    (tmp_path / "cut.bin").write_bytes(pickle.dumps((bins, issame.tolist()))[:100])
    with pytest.raises(VerificationBinError, match="cut.bin: not a readable pickle"):
        read_verification_bin(tmp_path / "cut.bin")
    (tmp_path / "junk.bin").write_bytes(pickle.dumps(([b"\xff\xd8junk", bins[1]], [True])))
    with pytest.raises(DecodeError, match=r"junk.bin image 0: cannot decode"):
        read_verification_bin(tmp_path / "junk.bin")


def test_empty_file_of_zero_pairs(tmp_path):
    write_verification_bin(tmp_path / "e.bin", [], torch.zeros(0, dtype=torch.bool))
    images, same = read_verification_bin(tmp_path / "e.bin", image_size=(112, 112))
    assert images.shape == (0, 3, 112, 112) and same.shape == (0,)


def test_writer_checks_its_arguments(tmp_path):
    images, _ = pairs(2)
    with pytest.raises(ValueError, match="images: expected 2 \\* 1 = 2"):
        write_verification_bin(tmp_path / "x.bin", images, [True])
    with pytest.raises(ValueError, match="issame"):
        write_verification_bin(tmp_path / "x.bin", images, [1, 0])
    assert not (tmp_path / "x.bin").exists()
