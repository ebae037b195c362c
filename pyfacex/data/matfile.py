"""MATLAB Level 5 MAT-files, the subset benchmark lists use (numeric and char arrays, cell arrays),
read and written without scipy (TinyFace's identity lists are .mat files).

Layout (MathWorks, "MAT-File Format", Level 5): a 128-byte header (116 bytes of text, 8 bytes of
subsystem offset, version 0x0100, endian indicator "IM" for little-endian), then one ``miMATRIX``
element per variable (or an ``miCOMPRESSED`` one holding it zlib-compressed, MATLAB's v7 default).
Every element is an 8-byte tag (uint32 data type, uint32 byte count; or a 4-byte "small element"
tag) followed by its data padded to a multiple of 8 bytes. A matrix holds the sub-elements array
flags (miUINT32 ×2: class, nzmax), dimensions (miINT32), name (miINT8) and its data: for numbers one
numeric block (column-major), for a char array one text block, for a cell array one nameless
miMATRIX per cell (column-major). ``scipy.io.loadmat`` reads what :func:`write_mat` writes.
"""
from __future__ import annotations

import math
import os
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["read_mat", "write_mat"]

_MI_INT8, _MI_UINT16, _MI_INT32, _MI_UINT32, _MI_DOUBLE, _MI_MATRIX = 1, 4, 5, 6, 9, 14
_MX_CELL, _MX_CHAR, _MX_DOUBLE = 1, 4, 6
_MAX_INFLATED = 1 << 28       # a compressed element may not inflate beyond 256 MiB

_MI_COMPRESSED = 15
_MI_NUMBERS = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_MI_TEXT = {2: "latin-1", 4: "utf-16", 16: "utf-8", 17: "utf-16"}
_MX_NUMERIC = range(6, 16)          # double, single, int8 ... uint64
_FLAG_COMPLEX = 0x0800


class _MatReader:
    """Walks the data elements of one MAT-file; every error names the file and the byte offset."""

    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        if len(self.data) < 128:
            raise ValueError(f"{path}: not a MAT-file (a Level 5 header is 128 bytes, the file has {len(self.data)})")
        endian = self.data[126:128]
        if endian not in (b"IM", b"MI"):
            raise ValueError(f"{path}: not a MATLAB Level 5 MAT-file (endian indicator {endian!r} at offset 126)")
        self.order = "<" if endian == b"IM" else ">"

    def fail(self, offset: int, message: str, inside: int | None = None):
        where = f"offset {offset}" if inside is None else f"offset {offset} of the compressed element at {inside}"
        raise ValueError(f"{self.path}: {where}: {message}")

    def elements(self, buffer: bytes, start: int, end: int, inside: int | None = None):
        """Yield (data type, body start, body size, element offset) of each element in buffer[start:end]."""
        offset = start
        while offset < end:
            if offset + 8 > end:
                self.fail(offset, f"truncated element tag ({end - offset} bytes left)", inside)
            kind, size = struct.unpack_from(self.order + "II", buffer, offset)
            if kind >> 16:  # small data element: size and type share the first word, data in the second
                kind, size, body, stride = kind & 0xFFFF, kind >> 16, offset + 4, 8
                if size > 4:
                    self.fail(offset, f"small data element claims {size} bytes (at most 4)", inside)
            else:
                # compressed elements are not padded; every other element is padded to 8 bytes
                body, stride = offset + 8, 8 + size + (0 if kind == _MI_COMPRESSED else -size % 8)
                if body + size > end:
                    self.fail(offset, f"element of {size} bytes runs past the end ({end - body} bytes left)", inside)
            yield kind, body, size, offset
            offset += stride

    def variables(self):
        """Yield (name, matrix) of each top-level variable, where matrix = (buffer, body, size, offset,
        inside) locates its miMATRIX payload (in the inflated bytes of a compressed element)."""
        for kind, body, size, offset in self.elements(self.data, 128, len(self.data)):
            buffer, inside = self.data, None
            if kind == _MI_COMPRESSED:
                inflater = zlib.decompressobj()
                try:
                    buffer = inflater.decompress(self.data[body:body + size], _MAX_INFLATED)
                except zlib.error as error:
                    self.fail(offset, f"compressed element does not inflate ({error})")
                if inflater.unconsumed_tail:
                    self.fail(offset, f"compressed element inflates beyond {_MAX_INFLATED} bytes")
                inside = offset
                inner = list(self.elements(buffer, 0, len(buffer), inside))
                if len(inner) != 1:
                    self.fail(offset, f"compressed element holds {len(inner)} elements, expected one matrix")
                kind, body, size, offset = inner[0]
            if kind == _MI_MATRIX:  # other top-level data (e.g. subsystem data) is no variable
                matrix = (buffer, body, size, offset, inside)
                yield self.header(*matrix)[3], matrix

    def header(self, buffer: bytes, body: int, size: int, offset: int, inside: int | None):
        """(class, flag word, shape, name, data elements) of one non-empty miMATRIX."""
        parts = list(self.elements(buffer, body, body + size, inside))
        if len(parts) < 3:
            self.fail(offset, "matrix without array flags, dimensions and name", inside)
        (_, flags, flags_size, _), (_, dims, dims_size, _), (_, name, name_size, _) = parts[:3]
        if flags_size < 4 or dims_size % 4 or not dims_size:
            self.fail(offset, "malformed array flags or dimensions", inside)
        flag_word = struct.unpack_from(self.order + "I", buffer, flags)[0]
        shape = struct.unpack_from(f"{self.order}{dims_size // 4}i", buffer, dims)
        if min(shape) < 0:
            self.fail(offset, f"negative dimensions {shape}", inside)
        label = bytes(buffer[name:name + name_size]).decode("ascii", "replace")
        return flag_word & 0xFF, flag_word, shape, label, parts[3:]

    def value(self, buffer: bytes, body: int, size: int, offset: int, inside: int | None):
        """Decode one miMATRIX: numbers as a float64 array in MATLAB's shape, a char array as str (one
        row) or list of str (one per row), a cell array as the list of its cells' values in
        column-major order."""
        if size == 0:
            return np.zeros((0, 0))  # MATLAB writes an empty cell's content as an empty matrix
        mx_class, flag_word, shape, label, data = self.header(buffer, body, size, offset, inside)
        count = math.prod(shape)
        if mx_class == _MX_CELL:
            if len(data) != count:
                self.fail(offset, f"cell array {label!r} of shape {shape} holds {len(data)} cells", inside)
            return [self.value(buffer, cell, cell_size, cell_offset, inside)
                    for _, cell, cell_size, cell_offset in data]
        if (mx_class not in _MX_NUMERIC and mx_class != _MX_CHAR) or flag_word & _FLAG_COMPLEX or len(data) != 1:
            self.fail(offset, f"variable {label!r}: only real numeric, char and cell arrays are read "
                              f"(class {mx_class}, flags {flag_word:#x})", inside)
        kind, start, length, data_offset = data[0]
        raw = buffer[start:start + length]
        if mx_class == _MX_CHAR and kind in _MI_TEXT:
            wide = "" if kind in (2, 16) else "-le" if self.order == "<" else "-be"
            text = bytes(raw).decode(_MI_TEXT[kind] + wide, "replace")
            if len(text) != count:
                self.fail(data_offset, f"char array {label!r} of shape {shape} holds {len(text)} characters", inside)
            rows = [text[r::max(shape[0], 1)] for r in range(shape[0])]   # column-major
            return rows[0] if len(rows) == 1 else rows
        if kind not in _MI_NUMBERS:
            self.fail(data_offset, f"variable {label!r}: unsupported data type {kind}", inside)
        if length % np.dtype(_MI_NUMBERS[kind]).itemsize:
            self.fail(data_offset, f"variable {label!r}: {length} bytes is no whole number of values", inside)
        values = np.frombuffer(raw, dtype=self.order + _MI_NUMBERS[kind])
        if len(values) != count:
            self.fail(data_offset, f"variable {label!r} of shape {shape} holds {len(values)} values", inside)
        return values.astype(np.float64).reshape(shape, order="F")


def read_mat(path: str | os.PathLike, names: Sequence[str]) -> dict[str, object]:
    """Read variables from a MATLAB Level 5 MAT-file (v6 or zlib-compressed v7), without scipy.

    Args:
        path: the .mat file.
        names: the variables to return.
    Returns:
        name -> value: real numeric arrays as float64 numpy arrays in MATLAB's shape, char arrays as
        str (one row) or a list of str (one per row), cell arrays as a list of their cells' values in
        column-major order (an (N, 1) cell of names becomes a list of N str).
    Raises:
        FileNotFoundError; ValueError naming the file and byte offset for a malformed or truncated
        file, a requested variable of an unsupported class (struct, sparse, complex...) or a missing one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MAT-file not found")
    reader, found = _MatReader(path), {}
    for name, matrix in reader.variables():
        if name in names and name not in found:
            found[name] = reader.value(*matrix)
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"{path}: expected variables {missing}, the file holds none of that name")
    return found


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
