"""Writing insightface training sets in RecordIO (``train.rec``, ``train.idx``, ``property``): the layout
:mod:`pyfacex.data.record_dataset` reads (its module docstring describes it)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ._args import label_vector
from .codec import decode_image, encode_jpeg, encode_png
from .folder import ImageFolderDataset
from .record_dataset import _FLOAT32_EXACT, _LABEL_PREFIX, RecordDataset
from .record_index import header_labels
from .recordio import (
    IRHeader,
    RecordIOError,
    RecordReader,
    RecordWriter,
    frame_record,
    leading_labels,
    pack_record,
    read_index_arrays,
    unpack_record,
)

__all__ = ["RecordDatasetWriter", "write_record_dataset"]

_ENCODINGS = ("jpeg", "png", "raw")


def _check_video(value, where: str) -> int:
    """A video id as an int in [0, 2^24) (stored as float32, exact in that range), or a ValueError
    naming the argument ``video`` and ``where`` (which image)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"video: expected an int video id for {where}, got {type(value).__name__} {value!r}")
    if not 0 <= value < _FLOAT32_EXACT:
        raise ValueError(f"video: expected a video id in [0, 2^24 = {_FLOAT32_EXACT}) for {where} (the integers "
                         f"a float32 label holds exactly), got {int(value)}")
    return int(value)


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
    docstring). Files are written under temporary names (``train.rec.partial``, ``train.idx.partial``)
    and renamed by :meth:`close`, ``train.rec`` last, so a ``train.rec`` in ``out_dir`` is a whole set. A
    writer closed early (or by an exception in a ``with`` block) leaves no dataset behind, and deletes
    its partial files unless ``keep_partial`` is set.

    Resuming: with ``resume=True`` the partial files a writer left (``keep_partial=True`` and an
    exception or Ctrl-C, or a killed process) are reopened. A half-written last record and a
    half-written last index line are cut off, the records the index lists stay as they are, and
    :attr:`added` says how many images they hold: the caller adds the rest, in the same order. Only
    the caller can know the partial files come from the same images (:func:`pyfacex.data.pack_folder`
    records that in ``pack.json``); the writer checks that they are its layout for the declared
    counts (record 0's key range, ascending class labels below ``num_classes``, at most ``num_images``
    images) and raises :class:`RecordIOError` naming the file otherwise. A resume reads the label of
    every kept image (32 bytes each) to restore the class boundaries.

    Args:
        out_dir: the folder to write (created if missing).
        num_images, num_classes: how many images and classes :meth:`add` will be given.
        image_size: (height, width) written to ``property``.
        overwrite: replace an existing ``train.rec`` in ``out_dir`` (otherwise FileExistsError).
        resume: continue the partial files in ``out_dir`` (above); without both of them, or when they
            hold no whole record, the writer starts afresh.
        keep_partial: on an exception in a ``with`` block, close the partial files and leave them for a
            later ``resume=True`` instead of deleting them.
    """

    def __init__(self, out_dir: str | os.PathLike, num_images: int, num_classes: int,
                 image_size: tuple[int, int], overwrite: bool = False, *, resume: bool = False,
                 keep_partial: bool = False, _exact_keys: int = _FLOAT32_EXACT):
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
        self.keep_partial = keep_partial
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # train.rec is renamed last: its presence means the whole set is in place (the overwrite check above).
        self._final = {name: self.out_dir / name for name in ("property", "train.idx", "train.rec")}
        self._partial = {name: path.with_name(path.name + ".partial") for name, path in self._final.items()}
        self._key = 1 if self.ranged else 0
        self._added, self._class, self._starts = 0, 0, [self._key]
        rec, idx = self._partial["train.rec"], self._partial["train.idx"]
        if resume and rec.is_file() and idx.is_file() and self._resume(rec, idx):
            self._writer = RecordWriter(rec, idx, append=True)
            return
        self._writer = RecordWriter(rec, idx)
        if self.ranged:  # (first, end): the identity records' keys, after the images at keys 1..N
            first = num_images + 1
            self._writer.write(0, pack_record(IRHeader(0, [first, first + num_classes], 0, 0)))

    @property
    def added(self) -> int:
        """Images added so far, those a resume found in the partial files included."""
        return self._added

    def _enter(self, klass: float) -> None:
        """Check that an image of class ``klass`` may come next (ascending classes, at most ``num_images``)
        and record the keys where the classes up to it start."""
        if not (klass == np.round(klass) and self._class <= klass < self.num_classes):  # NaN, inf: False
            raise ValueError(f"label: expected class labels in ascending order in [{self._class}, "
                             f"{self.num_classes}), got {klass} for image {self._added}")
        if self._added >= self.num_images:
            raise ValueError(f"add: more than the {self.num_images} images declared")
        while self._class < klass:
            self._starts.append(self._key)
            self._class += 1

    def add(self, payload: bytes, label, video: int | None = None) -> None:
        """Append one encoded image with its class label (int) or float labels (class label first),
        and optionally its video id (an int in [0, 2^24), stored as the second float label; then
        ``label`` must be the class label alone)."""
        rows = np.atleast_1d(np.asarray(label, dtype=np.float64))
        klass = rows[0]
        self._enter(klass)
        if video is not None:
            if rows.size != 1:
                raise ValueError(f"label: with a video id (stored as the second float), expected the class label "
                                 f"alone, got {rows.size} float labels for image {self._added}")
            rows = np.array([klass, _check_video(video, f"image {self._added}")], dtype=np.float64)
        header = IRHeader(0, rows[0] if rows.size == 1 else rows, self._key, 0)
        self._writer.write(self._key, pack_record(header, payload))
        self._key += 1
        self._added += 1

    def _resume(self, rec: Path, idx: Path) -> bool:
        """Cut the partial files back to their last whole record and index line and restore the writer's
        state from them; False when they hold no whole record (then nothing is kept)."""
        with open(idx, "r+b") as f:  # a half-written last line (killed mid-write) goes
            size = f.seek(0, os.SEEK_END)
            f.seek(max(size - 64, 0))  # a line is at most 42 bytes: two int64s, a tab and a newline
            tail = f.read()
            if tail and not tail.endswith(b"\n"):
                if b"\n" not in tail and size > len(tail):
                    raise RecordIOError(f"{idx}: the last 64 bytes hold no line end; not an index RecordDatasetWriter "
                                        f"wrote, cannot resume")
                size -= len(tail) - tail.rfind(b"\n") - 1
                f.truncate(size)
        keys, offsets = read_index_arrays(idx)
        if not np.array_equal(keys, np.arange(keys.size)):
            raise RecordIOError(f"{idx}: keys are not 0, 1, 2, ... in file order; not an index RecordDatasetWriter "
                                f"wrote, cannot resume")
        reader = RecordReader(rec)
        try:
            kept, end = self._whole_records(reader, offsets)
            if kept == 0:
                return False
            # The index lines of the records cut off are exactly what RecordWriter wrote for them.
            dropped = "".join(f"{k}\t{o}\n" for k, o in zip(keys[kept:].tolist(), offsets[kept:].tolist())).encode()
            with open(idx, "r+b") as f:
                f.seek(size - len(dropped))
                if f.read() != dropped:
                    raise RecordIOError(f"{idx}: its last lines are not 'key<TAB>offset' as RecordDatasetWriter "
                                        f"writes them, cannot resume")
                f.truncate(size - len(dropped))
            os.truncate(rec, end)
            self._restore(reader, offsets[:kept])
        finally:
            reader.close()
        return True

    @staticmethod
    def _whole_records(reader: RecordReader, offsets: np.ndarray) -> tuple[int, int]:
        """(how many of the indexed records are whole in the ``.rec``, the byte where the last whole one
        ends). Records are written in key order, so the whole ones are a prefix: a killed writer may have
        listed records whose bytes it had not written yet."""
        for kept in range(offsets.size, 0, -1):
            offset = int(offsets[kept - 1])
            try:
                end = offset + len(frame_record(reader.read(offset)))  # the same bytes written again: its framing
            except RecordIOError:
                continue
            if end <= reader.size:  # (the padding of the last part may be missing)
                return kept, end
        return 0, 0

    def _restore(self, reader: RecordReader, offsets: np.ndarray) -> None:
        """The writer's state after the records at ``offsets`` (keys 0, 1, ...), read back from them."""
        images = offsets
        if self.ranged:
            source = f"{reader.path} at byte 0 (key 0)"
            header, payload = unpack_record(reader.read(int(offsets[0])), source)
            first = self.num_images + 1
            expected = [float(first), float(first + self.num_classes)]
            if header.flag != 2 or len(payload) or np.asarray(header.label).tolist() != expected:
                raise RecordIOError(f"{source}: expected the header record with key range {expected} for "
                                    f"{self.num_images} images of {self.num_classes} classes, got flag {header.flag}, "
                                    f"label {header.label}: partial files of another set, cannot resume")
            images = offsets[1:]
        classes, _, _, fallback = header_labels(reader.path, images)
        for position in fallback.tolist():  # records split at a magic: read one by one (errors name them)
            offset = int(images[position])
            source = f"{reader.path} at byte {offset} (key {self._key + position})"
            classes[position] = leading_labels(reader.read(offset, limit=_LABEL_PREFIX), 1, source)[0]
        for klass in classes.tolist():
            try:
                self._enter(klass)
            except ValueError as error:
                raise RecordIOError(f"{reader.path} (key {self._key}): cannot resume: {error}") from None
            self._key += 1
            self._added += 1

    def close(self) -> Path:
        """Write the identity records and ``property``, put the files in place and write the index cache
        (:mod:`pyfacex.data.record_index`, read back from the headers just written). Returns ``out_dir``."""
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
        RecordDataset(self.out_dir).labels  # writes the index cache, so that the first open is already fast
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
        elif self.keep_partial:
            self._writer.close()  # flushed: a resume finds every record added
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
