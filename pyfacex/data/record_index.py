"""The per-image columns of a RecordIO training set (index key, byte offset, class label, second float
label), read fast from the record headers and cached beside the data.

At 42M images, reading 32 header bytes per record with one Python call each takes minutes; so does
parsing the ``.idx`` text. :func:`header_labels` gathers the headers of 65,536 records at a time
with numpy from a memory map of the part of the ``.rec`` they lie in, and :func:`save_index` /
:func:`load_index` keep the result in two files beside the ``.rec`` (``<stem>.index.npy``, a structured
array memory-mapped on open so that every DataLoader worker shares its pages, and ``<stem>.index.json``,
the stamp that says which files it was built from). A stamp that no longer matches the ``.idx``, ``.rec``
or ``property`` (size, modification time, contents of ``property``) makes the cache stale: it is rebuilt,
never used.

When the data folder is not writable (a read-only share), the cache goes to
``$XDG_CACHE_HOME/pyfacex/record-index/<hash of the .rec path>/`` (``~/.cache`` by default).
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .recordio import MAGIC

__all__ = ["IndexColumns", "header_labels", "bad_labels", "cache_paths", "load_index", "save_index"]

_FORMAT = 1
_COLUMNS = np.dtype([("key", "<i8"), ("offset", "<i8"), ("label", "<i4"), ("second", "<f4")])
# Records whose headers are gathered at once: about 10 MB of temporaries, and in a set of real images
# (a page or more per record) at most 256 MiB of mapped pages.
_GATHER_CHUNK = 1 << 16
# uint32 words from a record's start: magic, lrec, IRHeader (flag, label, id lo/hi, id2 lo/hi), 2 floats
_WORDS = 10
_LENGTH_MASK = (1 << 29) - 1
_IR_BYTES = 24
_DIGESTED = 1 << 20  # bytes hashed at each end of the .rec and .idx for the stamp


class IndexColumns(NamedTuple):
    """The images of a RecordIO set, in image order.

    Attributes:
        keys, offsets: int64 (N,), the index key and byte offset of each image record.
        labels: int32 (N,), the class label (the first float label).
        seconds: float32 (N,), the second float label (0 where a record has none).
        without_second, with_second: the first image position whose record has no second float label,
            and the first that has one (None when there is none such).
    """

    keys: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    seconds: np.ndarray
    without_second: int | None
    with_second: int | None


def header_labels(rec_path: Path, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The leading float labels of the records at ``offsets`` of ``rec_path``, from their headers only.

    Returns:
        (first float64 (N,), second float32 (N,) (0 where absent), has_second bool (N,), fallback int64
        (M,)): ``fallback`` lists the positions this fast path could not read (a record split at a
        magic, an unaligned offset, anything malformed); their entries are left 0 for the caller to
        read one by one with :class:`~pyfacex.data.recordio.RecordReader`, which reads split records
        and names the file and byte of a malformed one.
    """
    count = offsets.size
    first, second = np.zeros(count, np.float64), np.zeros(count, np.float32)
    has_second = np.zeros(count, bool)
    fallback = []
    size = os.path.getsize(rec_path)
    if count == 0 or size < 4 * _WORDS:
        return first, second, has_second, np.arange(count, dtype=np.int64)
    with open(rec_path, "rb") as file:
        for start in range(0, count, _GATHER_CHUNK):
            chunk = offsets[start:start + _GATHER_CHUNK]
            readable = (chunk % 4 == 0) & (chunk >= 0) & (chunk + 4 * _WORDS <= size)
            got = _gather_words(file, chunk, readable)
            length, flag = got[:, 1] & _LENGTH_MASK, got[:, 2].astype(np.int64)
            floats = got[:, [3, 8, 9]].view("<f4")  # the header's label, the first two float labels
            needed = _IR_BYTES + 4 * np.minimum(flag, 2)
            # A plain record (cflag 0) that lies inside the file and holds the labels its flag announces.
            good = readable & (got[:, 0] == MAGIC) & (got[:, 1] >> 29 == 0) & (length >= needed) \
                & (chunk + 8 + length <= size)
            fallback.append(start + np.flatnonzero(~good))
            part = slice(start, start + chunk.size)
            first[part] = np.where(good, np.where(flag == 0, floats[:, 0], floats[:, 1]), 0.0)
            has_second[part] = good & (flag >= 2)
            second[part] = np.where(has_second[part], floats[:, 2], 0.0)
    return first, second, has_second, np.concatenate(fallback)


def _gather_words(file, offsets: np.ndarray, readable: np.ndarray) -> np.ndarray:
    """(N, _WORDS) uint32: the first words of the records at ``offsets`` (zeros where not ``readable``).

    Each chunk maps only the span of the file its records lie in, and unmaps it before the next: a
    mapping of the whole ``.rec`` would leave every page it touched in the process's resident set (at 20M
    records, a page or more each), though the page cache already holds them for every process.
    """
    got = np.zeros((offsets.size, _WORDS), np.uint32)
    if not readable.any():
        return got
    inside = offsets[readable]
    low = int(inside.min()) // mmap.ALLOCATIONGRANULARITY * mmap.ALLOCATIONGRANULARITY
    with mmap.mmap(file.fileno(), int(inside.max()) + 4 * _WORDS - low, offset=low, access=mmap.ACCESS_READ) as span:
        words = np.frombuffer(span, dtype="<u4")
        got[readable] = words[((inside - low) // 4)[:, None] + np.arange(_WORDS)]
        del words  # the map closes only when no array views it
    return got


def _stamp(rec: Path, idx: Path, prop: Path) -> dict:
    def file(path: Path) -> dict:
        # Size and time (not the path: a copied set keeps its cache), and a digest of the first and last
        # MiB: file times tick only every few milliseconds, so a set rewritten at once with the same sizes
        # (as tests do) has the same times; a small set is hashed whole.
        status, digest = path.stat(), hashlib.sha256()
        with open(path, "rb") as f:
            digest.update(f.read(_DIGESTED))
            if status.st_size > 2 * _DIGESTED:
                f.seek(-_DIGESTED, os.SEEK_END)
            digest.update(f.read(_DIGESTED))
        return {"size": status.st_size, "mtime_ns": status.st_mtime_ns, "sha256_ends": digest.hexdigest()}
    return {"format": _FORMAT, "rec": file(rec), "idx": file(idx), "property": prop.read_text().strip()}


def cache_paths(rec: Path) -> list[Path]:
    """Where the cache of ``rec`` may be, in the order tried: beside it, then the user's cache folder.
    Each entry is the ``.npy`` path (its stamp: the same name with ``.json``)."""
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(str(rec.resolve()).encode()).hexdigest()[:16]
    name = rec.with_suffix(".index.npy").name
    return [rec.with_name(name), home / "pyfacex" / "record-index" / digest / name]


def load_index(rec: Path, idx: Path, prop: Path, stamp: dict | None = None) -> tuple[IndexColumns, Path, dict] | None:
    """The cached columns of this set (memory-mapped), with the cache's path and stamp, or None when no
    cache matches the files as they are now (missing, stale, unreadable), or as ``stamp`` says they were."""
    current = _stamp(rec, idx, prop)
    if stamp is not None and stamp != current:
        return None
    stamp = current
    for path in cache_paths(rec):
        try:
            saved = json.loads(path.with_suffix(".json").read_text())
            if {key: saved.get(key) for key in stamp} != stamp:
                continue
            table = np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            continue
        if table.dtype != _COLUMNS or table.shape != (saved.get("count"),):
            continue
        return IndexColumns(table["key"], table["offset"], table["label"], table["second"],
                            saved.get("without_second"), saved.get("with_second")), path, stamp
    return None


def save_index(rec: Path, idx: Path, prop: Path, columns: IndexColumns) -> Path | None:
    """Write the cache (beside ``rec`` if that folder is writable, else in the user's cache folder).

    Each file is written under a per-process temporary name and renamed, the stamp last, so ranks that
    build the same cache at once never leave a mixed one. Returns the ``.npy`` path, or None when no
    location was writable (the caller keeps the columns in memory)."""
    table = np.empty(columns.keys.size, _COLUMNS)
    for name, values in zip(_COLUMNS.names, columns[:4]):
        table[name] = values
    document = {**_stamp(rec, idx, prop), "count": int(table.size),
                "without_second": columns.without_second, "with_second": columns.with_second}
    for path in cache_paths(rec):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _replace(path, lambda file: np.save(file, table, allow_pickle=False))
            _replace(path.with_suffix(".json"), lambda file: file.write(json.dumps(document).encode()))
            return path
        except OSError:
            continue
    return None


def _replace(path: Path, write) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as file:
            write(file)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def bad_labels(first: np.ndarray, num_classes: int) -> np.ndarray:
    """Positions whose first float label is not an integer class label in [0, num_classes)."""
    with np.errstate(invalid="ignore"):
        return np.flatnonzero(~(np.isfinite(first) & (first == np.round(first)) & (first >= 0)
                                & (first < num_classes)))

