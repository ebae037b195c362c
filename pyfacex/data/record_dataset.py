"""insightface training sets in RecordIO (``train.rec``, ``train.idx``, ``property``), read and written.

Layout of insightface's files (and of :func:`write_record_dataset`'s), by index key:

- key 0: a header-only record, IRHeader label = (first, end) as two floats (flag 2), no image;
- keys 1 .. first-1: the images, grouped by identity, each with its class label (flag 0, or flag K
  for K float labels, the class label first). With K >= 2 the second float is the image's video id
  (an integer in [0, 2^24), float32's exact range; unique within the identity at least): video
  training sets (the Face Aggregation Network's sets are frames of one video) store
  (class, video) with flag 2; files whose second float means something else are read as before,
  only :attr:`RecordDataset.videos` rejects them;
- keys first .. end-1: one header-only record per identity, label = (start, end) of its image keys;
- ``property``: the text ``num_classes,height,width``.

Files without that header record (insightface's ``SeqRecBuilder`` writes images from key 0 with
flag 0) are read as insightface's ``MXFaceDataset`` reads them: every key of the index, in index
order, is an image. Record 0 counts as the header record when it has at least one float label and
no bytes after its labels (insightface tests only ``flag > 0``; an image record always has bytes).
The writer uses the header-less layout itself when the keys would pass 2^24 (more than 16,777,215
images and identity records): record 0's (first, end) are float32, exact only up to 2^24, so such a
set has no header or identity records and its images take keys 0 .. N-1.
"""
from __future__ import annotations

import math
import operator
import os
import warnings
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ._skip import SkipBadItems
from .codec import DecodeError, decode_image
from .record_index import IndexColumns, bad_labels, header_labels, load_index, save_index
from .recordio import (
    IRHeader,
    RecordIOError,
    RecordReader,
    leading_labels,
    read_index_arrays,
    unpack_record,
)

__all__ = ["RecordDataset"]

# IRHeader (24 bytes) + the first two float labels: all that the class label and the video id need.
_LABEL_PREFIX = 32
# float32 holds every integer up to 2**24 exactly; keys and labels above that would be rounded.
_FLOAT32_EXACT = 1 << 24


def _dataset_paths(root: str | os.PathLike) -> tuple[Path, Path, Path]:
    root = Path(root)
    if root.is_dir():
        rec, idx, prop = root / "train.rec", root / "train.idx", root / "property"
    elif root.suffix == ".rec":
        rec, idx, prop = root, root.with_suffix(".idx"), root.parent / "property"
    else:
        raise FileNotFoundError(f"root: expected a folder holding train.rec, train.idx and property, or the "
                                f"path of an existing .rec file, got {root}")
    for path, what in ((rec, "RecordIO file"), (idx, "RecordIO index"), (prop, "property file")):
        if not path.is_file():
            raise FileNotFoundError(f"{what} {path} does not exist (root={root})")
    return rec, idx, prop


def _read_property(path: Path) -> tuple[int, tuple[int, int]]:
    text = path.read_text().strip()
    try:
        num_classes, height, width = (int(field) for field in text.split(","))
    except ValueError:
        raise RecordIOError(f"{path} line 1: expected 'num_classes,height,width' (three integers), "
                            f"got {text[:80]!r}") from None
    if min(num_classes, height, width) < 0:
        raise RecordIOError(f"{path} line 1: expected non-negative num_classes, height and width, got {text!r}")
    return num_classes, (height, width)


def _class_label(value: float, num_classes: int, source: str = "<record>") -> int:
    if not (math.isfinite(value) and value == int(value) and 0 <= value < num_classes):
        raise RecordIOError(f"{source}: class label {value} is not an integer in [0, {num_classes}) "
                            f"(num_classes from the property file)")
    return int(value)


class RecordDataset(SkipBadItems, Dataset):
    """An insightface RecordIO training set, read without mxnet.

    Args:
        root: a folder holding ``train.rec``, ``train.idx`` and ``property``, or the path of a
            ``.rec`` file (its ``.idx`` beside it, same stem, and ``property`` in the same folder).
        transform: optional callable applied to each image (uint8 (3, H, W)).
        on_error: ``"raise"`` (default): a bad record raises :class:`~pyfacex.data.recordio.RecordIOError`
            or :class:`~pyfacex.data.codec.DecodeError` naming the file and byte offset.
            ``"skip"``: ``dataset[i]`` of a bad record returns the next readable record instead
            (``i+1``, ``i+2``, ... wrapping round; its own image and its own label, never a label
            copied from elsewhere), adds one to :attr:`skipped` per bad record met and warns with the
            error and the running count. Raises only if no record is readable.
        index_cache: keep the per-image columns (index keys, offsets, labels, video ids) in
            ``<stem>.index.npy`` beside the ``.rec`` (or in the user's cache folder when that is read-only),
            written the first time the labels are read and memory-mapped by every later open, so that a
            20M-image set opens in a second and DataLoader workers share one copy
            (:mod:`pyfacex.data.record_index`). A cache whose stamp no longer matches the files is rebuilt.
            False: neither read nor write one.

    Attributes:
        num_classes: from the property file.
        image_size: (height, width) from the property file.
        keys: int64 numpy array (N,), the index key of each sample.
        labels, videos: the class label and video id of every image, from the headers (see below).
        skipped: bad records met by ``on_error="skip"`` in this process (each DataLoader worker
            counts its own; its warnings show in the worker's stderr).
        skip_log: None, or a file each skipped record's error (file, byte, key) is appended to as a
            line; trainers set it and count across workers and ranks (``data.on_error``).

    ``dataset[i]`` is ``(image, label)``: RGB uint8 (3, H, W) (or what ``transform`` makes of it)
    and the int class label (the first float of a multi-float label; :meth:`label_vector` gives all).
    The ``.rec`` is opened lazily in each process and read with ``os.pread``, so the dataset can go
    to forked or spawned DataLoader workers; pickling it carries no file handle.
    """

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None, on_error: str = "raise", *,
                 index_cache: bool = True):
        self._set_on_error(on_error)
        self._files = _dataset_paths(root)
        rec, idx, prop = self._files
        self.transform, self.index_cache = transform, bool(index_cache)
        self.num_classes, self.image_size = _read_property(prop)
        self._reader = RecordReader(rec)
        cached = load_index(*self._files) if self.index_cache else None
        if cached is not None:  # the stamp matched: the cache says which records are images
            self._attach(*cached)
            return
        self._columns = self._cache_path = None
        keys, offsets = read_index_arrays(idx)
        images = self._image_positions(keys, offsets, idx)  # positions in the index, None: every key
        self.keys = keys if images is None else keys[images]
        self._offsets = offsets if images is None else offsets[images]

    def _attach(self, columns: IndexColumns, cache_path: Path, stamp: dict) -> None:
        self._columns, self._cache_path, self._stamp = columns, cache_path, stamp
        self.keys, self._offsets = columns.keys, columns.offsets

    def __getstate__(self) -> dict:
        # A memory-mapped cache is reopened by each process that unpickles the dataset (a spawned
        # DataLoader worker) rather than copied into the pickle: 24 bytes per image, per worker.
        state = dict(self.__dict__)
        if self._cache_path is not None:
            for name in ("keys", "_offsets", "_columns"):
                state[name] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._cache_path is not None:
            cached = load_index(*self._files, stamp=self._stamp)
            if cached is None:
                raise RecordIOError(f"{self._reader.path}: the files changed after the dataset was opened (or its "
                                    f"index cache {self._cache_path} did)")
            self._attach(*cached)

    def _image_positions(self, keys: np.ndarray, offsets: np.ndarray, idx_path: Path) -> np.ndarray | None:
        """The index positions of the image records, in image order; None when every key is an image."""
        zero = np.flatnonzero(keys == 0)
        if zero.size == 0:
            return None
        offset = int(offsets[zero[0]])
        source = f"{self._reader.path} at byte {offset} (key 0)"
        header, payload = unpack_record(self._reader.read(offset), source)
        if header.flag == 0 or len(payload) > 0:
            return None  # no header record: key 0 is an image
        if header.flag < 2:
            raise RecordIOError(f"{source}: header record with {header.flag} float label, expected 2 (first, end)")
        first, end = (float(v) for v in header.label[:2])
        if not (first == int(first) and end == int(end) and 1 <= first <= end):
            raise RecordIOError(f"{source}: header record label ({first}, {end}) is not an integer key range "
                                f"1 <= first <= end")
        if end > _FLOAT32_EXACT:  # float32 rounds past 2^24: the range may name the wrong keys
            raise RecordIOError(f"{source}: header record range ({int(first)}, {int(end)}) passes 2^24, where its "
                                f"float32 labels are not exact; such sets must be written without it (images from "
                                f"key 0, as write_record_dataset does past 2^24)")
        order = np.argsort(keys, kind="stable")
        wanted = np.arange(1, int(first), dtype=np.int64)
        found = np.searchsorted(keys, wanted, sorter=order)
        present = found < keys.size
        present[present] = keys[order[found[present]]] == wanted[present]
        if not present.all():
            raise RecordIOError(f"{idx_path}: image key {int(wanted[np.argmin(present)])} is missing, but record 0 "
                                f"says keys 1..{int(first) - 1} are images")
        return order[found]

    def __len__(self) -> int:
        return len(self.keys)

    def _position(self, index: int) -> int:
        index = operator.index(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a RecordDataset of {len(self)} images")
        return index % len(self)

    def _source(self, position: int) -> str:
        return f"{self._reader.path} at byte {self._offsets[position]} (key {self.keys[position]})"

    def _header(self, position: int) -> tuple[IRHeader, memoryview]:
        source = self._source(position)
        return unpack_record(self._reader.read(int(self._offsets[position])), source)

    def _load(self, position: int):
        header, payload = self._header(position)
        source = self._source(position)
        label = _class_label(float(np.ravel(header.label)[0]), self.num_classes, source)
        return decode_image(payload, source=source), label

    def __getitem__(self, index: int):
        image, label = self._read_or_next(
            self._position(index), self._load, (RecordIOError, DecodeError),
            lambda: RecordIOError(f"{self._reader.path}: no readable record ({len(self)} tried)"))
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    def label_vector(self, index: int) -> torch.Tensor:
        """All float labels of image ``index``: float32 (K,), K = the header's flag (1 for flag 0)."""
        header, _ = self._header(self._position(index))
        return torch.from_numpy(np.atleast_1d(np.asarray(header.label, dtype=np.float32)).copy())

    @property
    def _index(self) -> IndexColumns:
        """The columns of every image, read from the headers on first use and cached (module docstring)."""
        if self._columns is None:
            columns = self._read_columns()
            path = save_index(*self._files, columns) if self.index_cache else None
            if self.index_cache and path is None:
                warnings.warn(f"RecordDataset: no writable place for the index cache of {self._reader.path} (beside "
                              f"it or under $XDG_CACHE_HOME); the labels are read from the headers at every open",
                              RuntimeWarning, stacklevel=3)
            self._columns = columns  # in memory: a cache written now is used from the next open on
        return self._columns

    def _read_columns(self) -> IndexColumns:
        first, second, has_second, fallback = header_labels(self._reader.path, self._offsets)
        for position in fallback.tolist():  # split or malformed records: read them one by one (errors name them)
            source = self._source(position)
            prefix = self._reader.read(int(self._offsets[position]), limit=_LABEL_PREFIX)
            values = leading_labels(prefix, 2, source)
            first[position] = values[0]
            if len(values) > 1:
                second[position], has_second[position] = values[1], True
        bad = bad_labels(first, self.num_classes)
        if bad.size:
            _class_label(float(first[bad[0]]), self.num_classes, self._source(int(bad[0])))  # raises, naming it
        without, with_ = ~has_second, has_second
        return IndexColumns(np.asarray(self.keys), np.asarray(self._offsets), first.astype(np.int32), second,
                            int(np.argmax(without)) if without.any() else None,
                            int(np.argmax(with_)) if with_.any() else None)

    @cached_property
    def labels(self) -> torch.Tensor:
        """int64 (N,): the class label of every image, read from the record headers only (no image
        decoding; 32 bytes per record, once, then from the index cache). Raises on a bad header
        whatever ``on_error`` says, since a sampler must not be given a wrong label."""
        return torch.from_numpy(self._index.labels.astype(np.int64))

    @cached_property
    def videos(self) -> torch.Tensor | None:
        """int64 (N,): the video id of every image (its second float label), or None when no image has
        a second float label. Read with :attr:`labels`, from the headers only.

        Raises:
            RecordIOError: some images have a video id and others not, or a second float label is not
                an integer in [0, 2^24) (the file's extra floats mean something else); names the record.
        """
        columns = self._index
        if columns.with_second is None:
            return None
        if columns.without_second is not None:
            raise RecordIOError(f"{self._source(columns.without_second)}: no video id (a single float label), but "
                                f"{self._source(columns.with_second)} has one; every image needs one or none does")
        values = columns.seconds.astype(np.float64)
        bad = np.flatnonzero(~((values == np.round(values)) & (values >= 0) & (values < _FLOAT32_EXACT)))
        if bad.size:
            raise RecordIOError(f"{self._source(int(bad[0]))}: second float label {values[bad[0]]} is not a video id "
                                f"(an integer in [0, 2^24 = {_FLOAT32_EXACT}))")
        return torch.from_numpy(values.astype(np.int64))
