"""dmlc RecordIO (mxnet's ``.rec`` + ``.idx``) without mxnet: framing, the IRHeader, the index.

Framing (dmlc-core ``recordio.h``/``recordio.cc``), little-endian uint32 words::

    magic 0xced7230a | lrec = cflag << 29 | length | payload part | zero padding to 4 bytes

A payload that contains the magic at a 4-byte-aligned offset is split there, the magic itself
dropped: cflag 1 on the first part, 2 on middle parts, 3 on the last (0 for an unsplit record).
Parts before the last are 4-byte multiples, so only the last is padded. The reader joins the parts
with the magic between them, giving back the payload byte for byte.

The payload of an image record (mxnet ``recordio.pack``) is an IRHeader, struct ``<IfQQ`` (flag
uint32, label float32, id uint64, id2 uint64, 24 bytes), then ``flag`` float32 labels when
flag > 0 (the header's own label field is then unused), then the encoded image. What the float
labels mean is the dataset's business (:mod:`pyfacex.data.record_dataset`: the class label, then
an optional video id); :func:`leading_labels` reads the first few from a record's first bytes.

The index (``.idx``) is text, one ``key<TAB>byte offset`` line per record.

Nothing read from a file is trusted: every length and offset is checked against the file size, and
a bad record raises :class:`RecordIOError` naming the file and the byte offset (or index line).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = [
    "IRHeader", "RecordIOError", "RecordReader", "RecordWriter",
    "pack_record", "unpack_record", "leading_labels", "frame_record", "read_index", "read_index_arrays", "IndexArrays",
]

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_WORDS = struct.Struct("<II")  # magic, lrec
_LENGTH_BITS = 29
_MAX_LENGTH = (1 << _LENGTH_BITS) - 1
_IR = struct.Struct("<IfQQ")


class RecordIOError(ValueError):
    """A ``.rec``/``.idx`` file that does not follow the format (message names the file and offset/line)."""


class IRHeader(NamedTuple):
    """mxnet's image-record header.

    Attributes:
        flag: number of float32 labels after the header (0: the single ``label`` field is the label).
        label: float for flag 0, else a float32 numpy array of ``flag`` values.
        id: record id (insightface: the record's key).
        id2: second id (0 in insightface's files).
    """
    flag: int
    label: float | np.ndarray
    id: int
    id2: int


def pack_record(header: IRHeader, payload: bytes = b"") -> bytes:
    """IRHeader + labels + payload as mxnet's ``recordio.pack`` makes them.

    ``header.label`` may be a number (flag 0) or a sequence/array of floats, stored after the header as
    float32 with ``flag = len(label)`` (the ``flag`` field of ``header`` is ignored, as mxnet does).
    """
    if isinstance(header.label, (int, float, np.integer, np.floating)):
        head = _IR.pack(0, float(header.label), header.id, header.id2)
        return head + bytes(payload)
    labels = np.asarray(header.label, dtype="<f4").reshape(-1)
    if labels.size == 0:
        raise ValueError("header.label: expected a number or a non-empty sequence of floats, got an empty one")
    return _IR.pack(labels.size, 0.0, header.id, header.id2) + labels.tobytes() + bytes(payload)


def unpack_record(record: bytes | memoryview, source: str = "<record>") -> tuple[IRHeader, memoryview]:
    """Split a record payload into its IRHeader and the bytes after it (the encoded image).

    Returns:
        (header, image bytes as a memoryview of ``record``); for flag > 0 ``header.label`` is a
        float32 array of ``flag`` values.
    Raises:
        RecordIOError: shorter than the header, or than the ``flag`` labels the header announces.
    """
    view = memoryview(record)
    if len(view) < _IR.size:
        raise RecordIOError(f"{source}: record of {len(view)} bytes is shorter than its IRHeader ({_IR.size} bytes)")
    flag, label, key, key2 = _IR.unpack_from(view)
    if flag == 0:
        return IRHeader(0, label, key, key2), view[_IR.size:]
    end = _IR.size + 4 * flag
    if end > len(view):
        raise RecordIOError(f"{source}: IRHeader announces {flag} float labels ({4 * flag} bytes) but the "
                            f"record has {len(view) - _IR.size} bytes after the header")
    labels = np.frombuffer(view[_IR.size:end], dtype="<f4").astype(np.float32)
    return IRHeader(flag, labels, key, key2), view[end:]


def leading_labels(prefix: bytes | memoryview, count: int, source: str = "<record>") -> tuple[float, ...]:
    """The first float labels of a record from its first ``24 + 4 * count`` bytes, for reading labels
    without the images: ``(label,)`` for flag 0, else the first ``min(count, flag)`` float labels.

    Raises:
        RecordIOError: ``prefix`` is shorter than the IRHeader and the labels it announces (up to
            ``count``); names ``source``.
    """
    view = memoryview(prefix)
    if len(view) >= _IR.size:
        flag, label, _, _ = _IR.unpack_from(view)
        if flag == 0:
            return (float(label),)
        wanted = min(count, flag)
        if len(view) >= _IR.size + 4 * wanted:
            return tuple(np.frombuffer(view, dtype="<f4", count=wanted, offset=_IR.size).tolist())
    raise RecordIOError(f"{source}: record of {len(view)} bytes is shorter than its IRHeader and first "
                        f"{count} float label(s)")


def frame_record(payload: bytes | memoryview) -> bytes:
    """The bytes dmlc's ``RecordIOWriter::WriteRecord`` writes for one payload (split at magics, padded)."""
    data = bytes(payload)
    if len(data) > _MAX_LENGTH:
        raise ValueError(f"payload: RecordIO records hold at most {_MAX_LENGTH} bytes, got {len(data)}")
    parts, start = [], 0
    # dmlc compares only 4-byte-aligned words, so a magic at another offset stays inside a part.
    position = data.find(_MAGIC_BYTES)
    while position != -1:
        if position % 4 == 0:
            parts.append(data[start:position])
            start = position + 4
            position = data.find(_MAGIC_BYTES, start)
        else:
            position = data.find(_MAGIC_BYTES, position + 1)
    parts.append(data[start:])
    out = bytearray()
    for i, part in enumerate(parts):
        cflag = 0 if len(parts) == 1 else 1 if i == 0 else 3 if i == len(parts) - 1 else 2
        out += _WORDS.pack(MAGIC, cflag << _LENGTH_BITS | len(part)) + part
    out += bytes(-len(data) % 4)
    return bytes(out)


class IndexArrays(NamedTuple):
    """A ``.idx`` file as arrays, in file order: ``keys`` and byte ``offsets``, both int64 (N,)."""

    keys: np.ndarray
    offsets: np.ndarray


def read_index_arrays(path: str | os.PathLike) -> IndexArrays:
    """Parse a ``.idx`` file into int64 arrays of keys and byte offsets, in file order.

    A line count, then numpy's text parser over the file's bytes chunk by chunk: 20M lines in seconds
    and in two 160 MB arrays (a dict of Python ints would take minutes and gigabytes). A file the fast
    parse cannot account for line by line (a malformed line, a blank line, a negative offset, a
    repeated key) is parsed again line by line, for an error naming the line, or for the blank lines
    that one skips.

    Raises:
        FileNotFoundError: no such file.
        RecordIOError: a line that is not ``int<TAB>int`` (names the line), a negative offset or a
            repeated key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RecordIO index {path} does not exist")
    # Two passes over the bytes: count the lines, then parse each chunk straight into arrays of that
    # size (no list of chunk results to concatenate: at 20M lines that would double the 320 MB peak).
    with open(path, "rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(_INDEX_CHUNK), b""))
        size = f.tell()
    keys, offsets = np.empty(lines + 1, np.int64), np.empty(lines + 1, np.int64)  # + a last line without "\n"
    filled = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_INDEX_CHUNK)
            rest = f.readline() if chunk and not chunk.endswith(b"\n") else b""  # end the chunk at a line end
            if not chunk:
                break
            pairs = _parse_index_chunk(np.frombuffer(chunk + rest, dtype=np.uint8))
            if pairs is None or filled + len(pairs) > keys.size:  # the line parser names it (or skips it)
                return _read_index_lines(path)
            keys[filled:filled + len(pairs)], offsets[filled:filled + len(pairs)] = pairs[:, 0], pairs[:, 1]
            filled += len(pairs)
            del pairs
    if os.path.getsize(path) != size:
        raise RecordIOError(f"{path}: the index changed while it was read")
    keys, offsets = keys[:filled], offsets[:filled]
    # Written in key order (as every writer does), no key repeats; otherwise sort to look (numpy's hashing
    # np.unique is several times slower on 10^7 keys).
    if not (keys[1:] > keys[:-1]).all():
        ordered = np.sort(keys)
        if (ordered[1:] == ordered[:-1]).any():
            return _read_index_lines(path)  # for the line of the repeated key
    return IndexArrays(keys, offsets)


_INDEX_CHUNK = 1 << 23  # bytes of .idx text parsed at once (8 MiB: about 250 MB of temporaries at most)
_DIGITS = 18  # at most 18 decimal digits: below 2^63, so no int64 overflow
_POWERS_OF_TEN = 10 ** np.arange(_DIGITS, dtype=np.int64)


def _parse_index_chunk(text: np.ndarray) -> np.ndarray | None:
    """(lines, 2) int64 of a chunk of ``.idx`` text made of whole ``key<TAB>offset`` lines (``\\n`` or
    ``\\r\\n`` ends, tabs or spaces between), parsed with array operations; None when the chunk holds
    anything else (a sign, a blank line, a third field, a number of more than 18 digits)."""
    digit = (text >= 48) & (text <= 57)
    newline = text == 10
    if not (digit | newline | (text == 9) | (text == 32) | (text == 13)).all():
        return None
    edges = np.diff(digit.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lines = int(newline.sum()) + (0 if text.size == 0 or text[-1] == 10 else 1)
    if starts.size != 2 * lines or (ends - starts).max(initial=0) > _DIGITS:
        return None
    line_of = np.searchsorted(np.flatnonzero(newline), starts)  # the line of each number: 2 on each line
    if not (np.array_equal(line_of[0::2], np.arange(lines)) and np.array_equal(line_of[1::2], np.arange(lines))):
        return None
    if starts.size == 0:
        return np.empty((0, 2), np.int64)
    # a number = the sum of its digits · 10^(digits after each); terms are laid out number after number
    lengths = ends - starts
    places = np.repeat(ends, lengths) - np.flatnonzero(digit) - 1
    terms = (text[digit].astype(np.int64) - 48) * _POWERS_OF_TEN[places]
    first_terms = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return np.add.reduceat(terms, first_terms).reshape(-1, 2)


def _read_index_lines(path: Path) -> IndexArrays:
    """:func:`read_index_arrays` one line at a time (blank lines skipped; errors name their line)."""
    keys, offsets, seen = [], [], set()
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                key, offset = (int(field) for field in fields)
            except ValueError:
                raise RecordIOError(f"{path} line {number}: expected 'key<TAB>offset' (two integers), "
                                    f"got {line[:80]!r}") from None
            if offset < 0:
                raise RecordIOError(f"{path} line {number}: negative offset {offset}")
            if not (-(1 << 63) < key < (1 << 63) - 1 and offset < (1 << 63) - 1):
                raise RecordIOError(f"{path} line {number}: key or offset beyond int64, got {line[:80]!r}")
            if key in seen:
                raise RecordIOError(f"{path} line {number}: key {key} already appeared")
            seen.add(key)
            keys.append(key)
            offsets.append(offset)
    return IndexArrays(np.array(keys, dtype=np.int64), np.array(offsets, dtype=np.int64))


def read_index(path: str | os.PathLike) -> dict[int, int]:
    """Parse a ``.idx`` file: ``{key: byte offset}`` in file order (:func:`read_index_arrays` as a dict,
    for small files; large ones are better kept as the arrays).

    Raises:
        FileNotFoundError: no such file.
        RecordIOError: a line that is not ``int<TAB>int`` (names the line), a negative offset or a
            repeated key.
    """
    keys, offsets = read_index_arrays(path)
    return dict(zip(keys.tolist(), offsets.tolist()))


class RecordReader:
    """Random access to the records of a ``.rec`` file by byte offset.

    The file is opened lazily, once per process (after a fork the child opens its own), and read
    with ``os.pread``, which has no shared file position: DataLoader workers and threads may read at
    once. Pickling keeps only the path.

    Args:
        path: the ``.rec`` file (must exist).
    """

    def __init__(self, path: str | os.PathLike):
        self._fd: int | None = None
        self._pid: int | None = None
        self._size = 0
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"RecordIO file {self.path} does not exist")

    def _file(self) -> int:
        if self._pid != os.getpid():  # never reuse a descriptor inherited through fork
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            self._pid = os.getpid()
            self._size = os.fstat(self._fd).st_size
        return self._fd

    @property
    def size(self) -> int:
        """Size of the ``.rec`` file in bytes."""
        self._file()
        return self._size

    def close(self) -> None:
        """Close this process's descriptor (the next read reopens it)."""
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = self._pid = None

    def __del__(self):
        self.close()

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])

    def read(self, offset: int, limit: int | None = None) -> bytes:
        """The payload of the record starting at byte ``offset`` (parts joined with the magic).

        Args:
            offset: where the record starts (from the index).
            limit: read only the first ``limit`` bytes of the payload (fewer if it is shorter), e.g.
                the IRHeader without the image.
        Raises:
            RecordIOError: the offset is past the end, the words there are not a record start
                (wrong magic, a continuation part), or a part is truncated. Names file and offset.
        """
        fd = self._file()
        parts, position, total = [], offset, 0

        def error(message: str) -> RecordIOError:
            where = f"{self.path} at byte {position}" + (f" (record at byte {offset})" if parts else "")
            return RecordIOError(f"{where}: {message}")

        while True:
            if position + _WORDS.size > self._size:
                raise error(f"{'next part' if parts else 'offset'} is past the end of the file ({self._size} "
                            f"bytes) or leaves no room for a record header")
            # With a limit, the words and the wanted bytes come in one call (labels of millions of records).
            chunk = os.pread(fd, _WORDS.size + (0 if limit is None else limit - total), position)
            if len(chunk) < _WORDS.size:
                raise error("the file ends before the record header (it shrank after being opened?)")
            magic, lrec = _WORDS.unpack_from(chunk)
            if magic != MAGIC:
                raise error(f"wrong magic 0x{magic:08x} (expected 0x{MAGIC:08x}); the index points elsewhere "
                            f"than a record, or the file is corrupt")
            cflag, length = lrec >> _LENGTH_BITS, lrec & _MAX_LENGTH
            if cflag > 3 or (cflag in (0, 1)) == bool(parts):
                raise error(f"continuation flag {cflag}, expected "
                            f"{'2 or 3 (a continuation)' if parts else '0 or 1 (a record start)'}")
            start = position + _WORDS.size
            if start + length > self._size:
                raise error(f"record part of {length} bytes runs past the end of the file ({self._size} bytes): "
                            f"truncated")
            # total: payload bytes so far, magics between parts included; below limit on entry.
            take = length if limit is None else min(length, limit - total)
            part = chunk[_WORDS.size:_WORDS.size + take]
            if len(part) < take:
                part += os.pread(fd, take - len(part), start + len(part))
                if len(part) < take:
                    raise error("the file ends inside the record (it shrank after being opened?)")
            parts.append(part)
            total += length
            if cflag in (0, 3):
                return _MAGIC_BYTES.join(parts)
            total += len(_MAGIC_BYTES)
            if limit is not None and total >= limit:
                return (_MAGIC_BYTES.join(parts) + _MAGIC_BYTES)[:limit]
            position = start + length + (-length % 4)


class RecordWriter:
    """Writes a ``.rec`` and its ``.idx`` as mxnet's ``MXIndexedRecordIO`` does (``key\\toffset`` lines).

    Use as a context manager, or call :meth:`close`.

    Args:
        rec_path: the ``.rec`` file to create (truncated if it exists).
        idx_path: the ``.idx`` file to create.
        append: keep the records both files hold and write after them (their keys stay taken). The files
            must exist and end at a whole record and a whole index line (RecordDatasetWriter's resume cuts
            a half-written tail off first).
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike, *, append: bool = False):
        self.rec_path, self.idx_path = Path(rec_path), Path(idx_path)
        self._keys: set[int] = set(read_index_arrays(self.idx_path).keys.tolist()) if append else set()
        # Append mode starts at the end of the file, so tell() gives the next record's offset.
        self._rec = open(self.rec_path, "ab" if append else "wb")
        self._idx = open(self.idx_path, "a" if append else "w")

    def write(self, key: int, payload: bytes | memoryview) -> int:
        """Append one record under ``key``; returns its byte offset."""
        key = int(key)
        if key < 0 or key in self._keys:
            raise ValueError(f"key: expected a new non-negative integer, got {key}")
        offset = self._rec.tell()
        self._rec.write(frame_record(payload))
        self._idx.write(f"{key}\t{offset}\n")
        self._keys.add(key)
        return offset

    def close(self) -> None:
        """Flush and close both files."""
        self._rec.close()
        self._idx.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
