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
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ._args import label_vector
from .codec import DecodeError, decode_image, encode_jpeg, encode_png
from .folder import ImageFolderDataset
from .recordio import (
    IRHeader,
    RecordIOError,
    RecordReader,
    RecordWriter,
    leading_labels,
    pack_record,
    read_index_arrays,
    unpack_record,
)

__all__ = ["RecordDataset", "RecordDatasetWriter", "write_record_dataset"]

_ON_ERROR = ("raise", "skip")
_ENCODINGS = ("jpeg", "png", "raw")
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


def _check_video(value, where: str) -> int:
    """A video id as an int in [0, 2^24) (stored as float32, exact in that range), or a ValueError
    naming the argument ``video`` and ``where`` (which image)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"video: expected an int video id for {where}, got {type(value).__name__} {value!r}")
    if not 0 <= value < _FLOAT32_EXACT:
        raise ValueError(f"video: expected a video id in [0, 2^24 = {_FLOAT32_EXACT}) for {where} (the integers "
                         f"a float32 label holds exactly), got {int(value)}")
    return int(value)


def _class_label(value: float, num_classes: int, source: str = "<record>") -> int:
    if not (math.isfinite(value) and value == int(value) and 0 <= value < num_classes):
        raise RecordIOError(f"{source}: class label {value} is not an integer in [0, {num_classes}) "
                            f"(num_classes from the property file)")
    return int(value)


class RecordDataset(Dataset):
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

    Attributes:
        num_classes: from the property file.
        image_size: (height, width) from the property file.
        keys: int64 numpy array (N,), the index key of each sample.
        labels, videos: the class label and video id of every image, from the headers (see below).
        skipped: bad records met by ``on_error="skip"`` in this process (each DataLoader worker
            counts its own; its warnings show in the worker's stderr).

    ``dataset[i]`` is ``(image, label)``: RGB uint8 (3, H, W) (or what ``transform`` makes of it)
    and the int class label (the first float of a multi-float label; :meth:`label_vector` gives all).
    The ``.rec`` is opened lazily in each process and read with ``os.pread``, so the dataset can go
    to forked or spawned DataLoader workers; pickling it carries no file handle.
    """

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None, on_error: str = "raise"):
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error: expected one of {_ON_ERROR}, got {on_error!r}")
        rec, idx, prop = _dataset_paths(root)
        self.transform, self.on_error, self.skipped = transform, on_error, 0
        self.num_classes, self.image_size = _read_property(prop)
        self._reader = RecordReader(rec)
        keys, offsets = read_index_arrays(idx)
        images = self._image_positions(keys, offsets, idx)  # positions in the index, None: every key
        self.keys = keys if images is None else keys[images]
        self._offsets = offsets if images is None else offsets[images]

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
        position = self._position(index)
        for step in range(len(self)):
            try:
                image, label = self._load((position + step) % len(self))
                break
            except (RecordIOError, DecodeError) as error:
                if self.on_error == "raise":
                    raise
                self.skipped += 1
                warnings.warn(f"RecordDataset skipped a bad record ({self.skipped} so far in this process): {error}",
                              RuntimeWarning, stacklevel=2)
        else:
            raise RecordIOError(f"{self._reader.path}: no readable record ({len(self)} tried)")
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    def label_vector(self, index: int) -> torch.Tensor:
        """All float labels of image ``index``: float32 (K,), K = the header's flag (1 for flag 0)."""
        header, _ = self._header(self._position(index))
        return torch.from_numpy(np.atleast_1d(np.asarray(header.label, dtype=np.float32)).copy())

    @cached_property
    def _label_columns(self) -> tuple[torch.Tensor, list]:
        """(class labels int64 (N,), second float label or None per image), from 32-byte header prefixes."""
        labels, seconds = [], []
        for position, offset in enumerate(self._offsets.tolist()):
            prefix = self._reader.read(offset, limit=_LABEL_PREFIX)
            try:
                values = leading_labels(prefix, 2)
                labels.append(_class_label(values[0], self.num_classes))
            except RecordIOError:  # again, naming the record: its name is built on this path only
                source = self._source(position)
                _class_label(leading_labels(prefix, 2, source)[0], self.num_classes, source)
            seconds.append(values[1] if len(values) > 1 else None)
        return torch.tensor(labels, dtype=torch.int64), seconds

    @property
    def labels(self) -> torch.Tensor:
        """int64 (N,): the class label of every image, read from the record headers only (no image
        decoding; 32 bytes per record, once). Raises on a bad header whatever ``on_error`` says, since
        a sampler must not be given a wrong label."""
        return self._label_columns[0]

    @cached_property
    def videos(self) -> torch.Tensor | None:
        """int64 (N,): the video id of every image (its second float label), or None when no image has
        a second float label. Read with :attr:`labels`, from the headers only.

        Raises:
            RecordIOError: some images have a video id and others not, or a second float label is not
                an integer in [0, 2^24) (the file's extra floats mean something else); names the record.
        """
        seconds = self._label_columns[1]
        missing = np.fromiter((value is None for value in seconds), dtype=bool, count=len(seconds))
        if missing.all():
            return None
        if missing.any():
            raise RecordIOError(f"{self._source(int(np.argmax(missing)))}: no video id (a single float label), but "
                                f"{self._source(int(np.argmin(missing)))} has one; every image needs one or none does")
        values = np.array(seconds, dtype=np.float64)
        bad = np.flatnonzero(~((values == np.round(values)) & (values >= 0) & (values < _FLOAT32_EXACT)))
        if bad.size:
            raise RecordIOError(f"{self._source(int(bad[0]))}: second float label {values[bad[0]]} is not a video id "
                                f"(an integer in [0, 2^24 = {_FLOAT32_EXACT}))")
        return torch.from_numpy(values.astype(np.int64))


def write_record_dataset(out_dir: str | os.PathLike, images, labels=None, *, videos=None, encoding: str = "jpeg",
                         quality: int = 95, image_size: tuple[int, int] | None = None,
                         overwrite: bool = False) -> Path:
    """Pack images into ``train.rec``, ``train.idx`` and ``property`` in insightface's layout.

    Writes record 0 (label (first, end)), the images at keys 1..N grouped by class (ascending class
    label, input order within a class), and one identity record per class 0..num_classes-1 with
    label (start, end) of its image keys, so that insightface's ``MXFaceDataset`` reads the result
    (past 2^24 keys, the images alone at keys 0..N-1: :class:`RecordDatasetWriter`). The files are
    written under temporary names and renamed at the end: a failed call leaves no half-written dataset.

    Args:
        out_dir: the folder to write (created if missing).
        images: an image folder (``root/<identity>/<image>``, or ``root/<identity>/<video>/<frame>``
            whose video ids are stored; labels as :class:`ImageFolderDataset` gives them), or N
            in-memory images: a uint8 tensor or numpy array (N, 3, H, W), or a sequence whose items
            are uint8 (3, H, W) tensors/arrays or encoded image bytes.
        labels: for in-memory images, (N,) integer class labels or (N, K) float labels whose first
            column is the class label (stored as K float32 labels). Must be None for a folder.
        videos: for in-memory images with (N,) class labels, optional (N,) integer video ids in
            [0, 2^24), stored as the second float label (read back as :attr:`RecordDataset.videos`).
        encoding: ``"jpeg"`` (at ``quality``), ``"png"``, or ``"raw"``: encoded bytes (a folder's
            files, bytes items) are stored as they are, not decoded or checked.
        quality: JPEG quality 1..100.
        image_size: (height, width) written to ``property``; by default the first image's size.
        overwrite: replace an existing ``train.rec`` in ``out_dir`` (otherwise FileExistsError).
    Returns:
        ``out_dir`` as a Path (open it with :class:`RecordDataset`).
    """
    if encoding not in _ENCODINGS:
        raise ValueError(f"encoding: expected one of {_ENCODINGS}, got {encoding!r}")
    out_dir = Path(out_dir)
    items, rows, videos, num_classes = _inputs(images, labels, videos)
    order = np.argsort(rows[:, 0].astype(np.int64), kind="stable")
    if image_size is None:
        image_size = _size(items[0], "images[0]") if items else (0, 0)
    with RecordDatasetWriter(out_dir, len(items), num_classes, image_size, overwrite=overwrite) as writer:
        for i in order.tolist():
            label = rows[i, 0] if rows.shape[1] == 1 else rows[i]
            writer.add(_encoded(items[i], encoding, quality, f"images[{i}]"), label,
                       video=None if videos is None else int(videos[i]))
    return out_dir


class RecordDatasetWriter:
    """Streams images, grouped by class in ascending class order, into insightface's RecordIO layout.

    For sets too large to hold in memory (a synthetic world rendered identity by identity). The
    counts are declared up front because record 0, written first, holds the key range of the
    identity records. When the keys would pass 2^24, where record 0's float32 range is no longer
    exact, the images take keys 0 .. N-1 with no header or identity records, the layout
    insightface's ``MXFaceDataset`` (and :class:`RecordDataset`) enumerate by the index (the module
    docstring). Files are written under temporary names and renamed by :meth:`close`; a
    writer closed early (or by an exception in a ``with`` block) leaves no dataset behind.

    Args:
        out_dir: the folder to write (created if missing).
        num_images, num_classes: how many images and classes :meth:`add` will be given.
        image_size: (height, width) written to ``property``.
        overwrite: replace an existing ``train.rec`` in ``out_dir`` (otherwise FileExistsError).
    """

    def __init__(self, out_dir: str | os.PathLike, num_images: int, num_classes: int,
                 image_size: tuple[int, int], overwrite: bool = False, *, _exact_keys: int = _FLOAT32_EXACT):
        self.out_dir = Path(out_dir)
        if (self.out_dir / "train.rec").exists() and not overwrite:
            raise FileExistsError(f"out_dir: {self.out_dir / 'train.rec'} exists (pass overwrite=True to replace it)")
        for name, value in (("num_images", num_images), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected an int >= 0, got {value!r}")
        if num_classes > _FLOAT32_EXACT:
            raise ValueError(f"num_classes: class labels are stored as float32, exact only up to {_FLOAT32_EXACT}, "
                             f"got {num_classes} classes")
        # _exact_keys: 2^24 (float32's exact integers); lowered by tests to write the keys-only layout small.
        self.ranged = num_images + 1 + num_classes <= _exact_keys  # record 0 holds the key ranges
        self.num_images, self.num_classes, self.image_size = num_images, num_classes, tuple(image_size)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._final = {name: self.out_dir / name for name in ("train.rec", "train.idx", "property")}
        self._partial = {name: path.with_name(path.name + ".partial") for name, path in self._final.items()}
        self._writer = RecordWriter(self._partial["train.rec"], self._partial["train.idx"])
        if self.ranged:  # (first, end): the identity records' keys, after the images at keys 1..N
            first = num_images + 1
            self._writer.write(0, pack_record(IRHeader(0, [first, first + num_classes], 0, 0)))
        self._key = 1 if self.ranged else 0
        self._added, self._class, self._starts = 0, 0, [self._key]

    def add(self, payload: bytes, label, video: int | None = None) -> None:
        """Append one encoded image with its class label (int) or float labels (class label first),
        and optionally its video id (an int in [0, 2^24), stored as the second float label; then
        ``label`` must be the class label alone)."""
        rows = np.atleast_1d(np.asarray(label, dtype=np.float64))
        klass = rows[0]
        if not (klass == round(klass) and self._class <= klass < self.num_classes):
            raise ValueError(f"label: expected class labels in ascending order in [{self._class}, "
                             f"{self.num_classes}), got {klass} for image {self._added}")
        if self._added >= self.num_images:
            raise ValueError(f"add: more than the {self.num_images} images declared")
        while self._class < klass:
            self._starts.append(self._key)
            self._class += 1
        if video is not None:
            if rows.size != 1:
                raise ValueError(f"label: with a video id (stored as the second float), expected the class label "
                                 f"alone, got {rows.size} float labels for image {self._added}")
            rows = np.array([klass, _check_video(video, f"image {self._added}")], dtype=np.float64)
        header = IRHeader(0, rows[0] if rows.size == 1 else rows, self._key, 0)
        self._writer.write(self._key, pack_record(header, payload))
        self._key += 1
        self._added += 1

    def close(self) -> Path:
        """Write the identity records and ``property``, and put the files in place. Returns ``out_dir``."""
        if self._added != self.num_images:
            self.abort()
            raise ValueError(f"close: {self._added} images were added, {self.num_images} declared")
        starts = self._starts + [self._key] * (self.num_classes + 1 - len(self._starts))
        first = self._key  # the key after the last image
        for c in range(self.num_classes if self.ranged else 0):  # the keys-only layout has no identity records
            self._writer.write(first + c, pack_record(IRHeader(0, [starts[c], starts[c + 1]], first + c, 0)))
        self._writer.close()
        self._partial["property"].write_text(f"{self.num_classes},{self.image_size[0]},{self.image_size[1]}\n")
        for name in self._final:
            os.replace(self._partial[name], self._final[name])
        return self.out_dir

    def abort(self) -> None:
        """Stop and remove the partial files."""
        self._writer.close()
        for path in self._partial.values():
            path.unlink(missing_ok=True)

    def __enter__(self) -> "RecordDatasetWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def _inputs(images, labels, videos) -> tuple[Sequence, np.ndarray, np.ndarray | None, int]:
    """(items, float64 label rows (N, K), int64 video ids (N,) or None, num_classes) from the writer's
    arguments."""
    if isinstance(images, (str, os.PathLike)):
        for name, value in (("labels", labels), ("videos", videos)):
            if value is not None:
                raise ValueError(f"{name}: must be None when images is a folder (root/<identity>/<image> gives "
                                 f"the labels, root/<identity>/<video>/<frame> the video ids too)")
        folder = ImageFolderDataset(images)
        return (folder.samples, folder.labels.numpy()[:, None].astype(np.float64),
                None if folder.videos is None else folder.videos.numpy(), folder.num_classes)
    if isinstance(images, (torch.Tensor, np.ndarray)):
        batch = torch.as_tensor(images)
        if batch.dtype != torch.uint8 or batch.dim() != 4 or batch.shape[1] not in (1, 3):
            raise ValueError(f"images: expected uint8 (N, 3, H, W), got {batch.dtype} {tuple(batch.shape)}")
        items = list(batch.unbind(0))
    else:
        items = list(images)
    if labels is None:
        raise ValueError("labels: required with in-memory images ((N,) class labels or (N, K) float labels)")
    rows = np.asarray(torch.as_tensor(labels, dtype=torch.float64))
    rows = rows.reshape(-1, 1) if rows.ndim == 1 else rows
    if rows.ndim != 2 or rows.shape[0] != len(items) or (rows.shape[1] == 0 and len(items)):
        raise ValueError(f"labels: expected (N,) or (N, K) with N = {len(items)} images, got shape {rows.shape}")
    classes = rows[:, 0]
    bad = np.flatnonzero(~(np.isfinite(classes) & (classes == np.round(classes)) & (classes >= 0)
                           & (classes < _FLOAT32_EXACT)))
    if bad.size:
        raise ValueError(f"labels: class label {classes[bad[0]]} of image {bad[0]} is not an integer in "
                         f"[0, {_FLOAT32_EXACT})")
    if videos is not None:
        videos = label_vector(videos, "videos")
        if videos.shape[0] != len(items) or rows.shape[1] != 1:
            raise ValueError(f"videos: expected (N,) video ids beside (N,) class labels, N = {len(items)}, got "
                             f"{videos.shape[0]} video ids and labels of shape {rows.shape}")
    return items, rows, videos, int(classes.max()) + 1 if len(items) else 0


def _encoded_bytes(item) -> bytes | None:
    if isinstance(item, Path):
        return item.read_bytes()
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    return None


def _image(item, source: str) -> torch.Tensor:
    data = _encoded_bytes(item)
    return decode_image(data, source=str(item) if isinstance(item, Path) else source) if data is not None \
        else torch.as_tensor(item)


def _size(item, source: str) -> tuple[int, int]:
    height, width = _image(item, source).shape[-2:]
    return int(height), int(width)


def _encoded(item, encoding: str, quality: int, source: str) -> bytes:
    if encoding == "raw":
        data = _encoded_bytes(item)
        if data is None:
            raise ValueError(f"{source}: encoding='raw' stores encoded bytes, got a {type(item).__name__}; "
                             f"use encoding='jpeg' or 'png' for decoded images")
        return data
    image = _image(item, source)
    return encode_jpeg(image, quality) if encoding == "jpeg" else encode_png(image)
