"""The smallest MATLAB Level 5 MAT-file writer TinyFace's identity lists need (no scipy dependency).

Layout (MathWorks, "MAT-File Format", Level 5): a 128-byte header (116 bytes of text, 8 bytes of
subsystem offset, version 0x0100, endian indicator "IM" for little-endian), then one uncompressed
``miMATRIX`` element per variable. Every element is an 8-byte tag (uint32 data type, uint32 byte
count) followed by its data padded to a multiple of 8 bytes. A matrix holds the sub-elements array
flags (miUINT32 ×2: class, nzmax), dimensions (miINT32), name (miINT8) and its data: for doubles one
miDOUBLE block (column-major), for a char array one miUTF16-compatible miUINT16 block, for a cell
array one nameless miMATRIX per cell (column-major). ``scipy.io.loadmat`` reads what this writes.
"""
from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["write_mat"]

_MI_INT8, _MI_UINT16, _MI_INT32, _MI_UINT32, _MI_DOUBLE, _MI_MATRIX = 1, 4, 5, 6, 9, 14
_MX_CELL, _MX_CHAR, _MX_DOUBLE = 1, 4, 6


def _element(data_type: int, payload: bytes) -> bytes:
    return struct.pack("<II", data_type, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def _matrix(mx_class: int, dims: tuple[int, ...], name: str, data: bytes) -> bytes:
    body = (_element(_MI_UINT32, struct.pack("<II", mx_class, 0))
            + _element(_MI_INT32, struct.pack(f"<{len(dims)}i", *dims))
            + _element(_MI_INT8, name.encode("ascii")) + data)
    return _element(_MI_MATRIX, body)


def _char_row(text: str, name: str = "") -> bytes:
    units = text.encode("utf-16-le")
    return _matrix(_MX_CHAR, (1, len(units) // 2), name, _element(_MI_UINT16, units))


def _variable(name: str, value: Sequence) -> bytes:
    if all(isinstance(v, str) for v in value) and len(value) > 0:
        return _matrix(_MX_CELL, (len(value), 1), name, b"".join(_char_row(v) for v in value))
    numbers = [float(v) for v in value]
    return _matrix(_MX_DOUBLE, (len(numbers), 1), name,
                   _element(_MI_DOUBLE, struct.pack(f"<{len(numbers)}d", *numbers)))


def write_mat(path: Path, variables: Mapping[str, Sequence]) -> None:
    """Write ``variables`` to a Level 5 MAT-file: a sequence of str becomes an (N, 1) cell array of
    char row vectors, a sequence of numbers an (N, 1) double column (an empty sequence an empty
    (0, 1) double)."""
    text = b"MATLAB 5.0 MAT-file, Platform: pyfacex, written by pyfacex.data.synthetic.protocols"
    header = text.ljust(116, b" ") + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + b"".join(_variable(name, value) for name, value in variables.items()))
