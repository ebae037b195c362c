"""Image folders to insightface RecordIO and back (``pyfacex data pack`` / ``pyfacex data unpack``).

:func:`pack_folder` streams an image folder (the layouts :class:`~pyfacex.data.ImageFolderDataset`
reads) into ``train.rec``, ``train.idx`` and ``property`` through
:class:`~pyfacex.data.RecordDatasetWriter`, one image in memory at a time, and resumes an interrupted
pack; :func:`unpack_record_dataset` writes a RecordIO set back out as an image folder, so that packing
that folder again gives the same files. Both report progress through a hook ``progress(done, total)``;
:class:`ProgressLine` is the one the command line prints with.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._args import check_int
from .codec import _JPEG_MAGIC
from .folder import ImageFolderDataset
from .record_dataset import RecordDataset
from .record_writer import _ENCODINGS, RecordDatasetWriter, _encoded, _size
from .recordio import RecordIOError

__all__ = ["pack_folder", "unpack_record_dataset", "ProgressLine"]

Progress = Callable[[int, int], None]
"""A progress hook: called with (items done, total) once at the start and after every item."""

_PACK_STATE = "pack.json"
_UNPACK_STATE = ".unpack.json"  # hidden: ImageFolderDataset ignores it
# Image formats by their first bytes, as the image folder suffixes ImageFolderDataset reads them by.
_MAGICS = ((_JPEG_MAGIC, "jpg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"BM", "bmp"), (b"II*\x00", "tif"),
           (b"MM\x00*", "tif"))


def pack_folder(folder: str | os.PathLike, out_dir: str | os.PathLike, *, encoding: str = "raw", quality: int = 95,
                resume: bool = True, overwrite: bool = False, progress: Progress | None = None) -> Path:
    """Pack an image folder into insightface RecordIO (``train.rec``, ``train.idx``, ``property``), resumably.

    The images are read one at a time in :class:`ImageFolderDataset` order (identity folders sorted by
    name give the labels 0..C-1; ``root/<identity>/<video>/<frame>`` also gives video ids, stored as
    the second float label) and written by :class:`RecordDatasetWriter` in insightface's layout, so
    the result is byte for byte what ``write_record_dataset(folder, encoding=...)`` writes, without
    holding the images in memory. ``property`` gets the first image's size.

    Resuming: ``out_dir/pack.json`` records what is being packed (the resolved folder, the number of
    images and classes, a SHA-256 of the relative paths, labels and video ids in order, the encoding,
    and the quality for ``"jpeg"``). An interrupted pack (an exception, Ctrl-C, a killed process) leaves
    ``train.rec.partial`` / ``train.idx.partial`` and ``pack.json``; the next call with the same
    arguments keeps the images they hold, unread and unwritten, and packs the rest. When ``pack.json``
    describes other input the call raises ValueError naming what differs, unless ``overwrite=True``
    (start over). Partial files without a ``pack.json`` are not a pack this function recorded and are
    started over. ``pack.json`` is removed when the pack is complete. (A file whose bytes change under
    the same name is not noticed: the listing is compared, not the contents.)

    Args:
        folder: the image folder, ``root/<identity>/<image>`` or ``root/<identity>/<video>/<frame>``.
        out_dir: the folder to write (created if missing).
        encoding: ``"raw"`` stores each file's bytes as they are (a JPEG stays that JPEG); ``"jpeg"``
            (at ``quality``) and ``"png"`` decode and re-encode.
        quality: JPEG quality 1..100 (``"jpeg"`` only).
        resume: continue an interrupted pack in ``out_dir``; False starts over.
        overwrite: replace a finished set in ``out_dir``, and start over a partial pack of other input
            (otherwise FileExistsError, ValueError).
        progress: called with (images packed, total) at the start (the images a resume found) and
            after every image; :class:`ProgressLine` prints it. An exception it raises stops the pack
            and leaves it resumable.
    Returns:
        ``out_dir`` as a Path (open it with :class:`RecordDataset`).
    Raises:
        FileNotFoundError: ``folder`` is not a folder. FileExistsError: ``out_dir`` holds a ``train.rec``.
        ValueError: bad ``encoding``/``quality``, a folder layout :class:`ImageFolderDataset` refuses, or a
            partial pack of other input. RecordIOError: partial files that are not the writer's.
    """
    if encoding not in _ENCODINGS:
        raise ValueError(f"encoding: expected one of {_ENCODINGS}, got {encoding!r}")
    if check_int("quality", quality, 1) > 100:
        raise ValueError(f"quality: expected an int in 1..100, got {quality}")
    folder, out = Path(folder), Path(out_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder: image folder {folder} does not exist or is not a directory")
    if (out / "train.rec").exists() and not overwrite:  # before listing a folder of millions of files
        raise FileExistsError(f"out_dir: {out / 'train.rec'} exists (pass overwrite=True to replace it)")
    images = ImageFolderDataset(folder)
    labels = images.labels.tolist()
    videos = None if images.videos is None else images.videos.tolist()
    state = {"folder": str(folder.resolve()), "images": len(images), "classes": images.num_classes,
             "listing": _listing_hash(images), "encoding": encoding,
             "quality": quality if encoding == "jpeg" else None}
    state_path = out / _PACK_STATE
    resuming = resume and (out / "train.rec.partial").is_file() and state_path.is_file()
    if resuming:
        differences = _differences(_read_state(state_path), state)
        if differences and not overwrite:
            raise ValueError(f"out_dir: {out} holds a partial pack of other input ({'; '.join(differences)}); pass "
                             f"overwrite=True (--overwrite) to start over, or pack into another folder")
        resuming = not differences
    if not resuming:
        state_path.unlink(missing_ok=True)  # it described the partial files the writer now starts over
    size = _size(images.samples[0], str(images.samples[0])) if len(images) else (0, 0)
    try:
        writer = RecordDatasetWriter(out, len(images), images.num_classes, size, overwrite=overwrite,
                                     resume=resuming, keep_partial=True)
    except RecordIOError as error:  # partial files the writer cannot continue
        raise RecordIOError(f"{error} (resume=False, --no-resume, starts over)") from None
    if not resuming:
        _write_state(state_path, state)
    with writer:
        if progress is not None:
            progress(writer.added, len(images))
        for i in range(writer.added, len(images)):
            path = images.samples[i]
            writer.add(_encoded(path, encoding, quality, str(path)), labels[i],
                       video=None if videos is None else videos[i])
            if progress is not None:
                progress(i + 1, len(images))
    state_path.unlink()
    return out


def unpack_record_dataset(root: str | os.PathLike, out_folder: str | os.PathLike, *, overwrite: bool = False,
                          progress: Progress | None = None) -> Path:
    """Write a RecordIO set out as an image folder that :func:`pack_folder` packs back to the same files.

    Layout: ``out_folder/<label>/<key>.<ext>``, or ``out_folder/<label>/<video>/<key>.<ext>`` when the
    set stores video ids (:attr:`RecordDataset.videos` is not None). Labels, video ids and keys are
    zero-padded to one width each, so sorted names follow their numbers: identity folder i holds label
    i (a folder is made for every class of ``property``, empty ones too, so that later labels keep
    their number) and a folder's files are in key order. The stored bytes are written as they are, not
    decoded; the suffix comes from their first bytes (jpg, png, bmp, webp, tif: the formats an image
    folder holds). Bytes of any other kind raise ValueError naming the record, since a folder could
    not give them back. Only the class label and the video id are kept of a record's labels.

    Packing the result gives the original ``train.rec`` byte for byte when the set is in
    :func:`pack_folder`'s order: images grouped by class, and within a class by video, video ids
    counting up from 0 in that order (the pack of a folder, ``write_record_dataset``). Other sets come
    back with the same images and labels in that order.

    Interruptions: the files go to ``<out_folder>.partial`` with a hidden ``.unpack.json`` saying which
    set they come from, and the folder is renamed to ``out_folder`` when complete. Rerunning the same
    call skips the files already there with the right size (a file cut short by a kill is shorter, so
    it is written again); a partial folder of another set is refused unless ``overwrite=True``.

    Args:
        root: the RecordIO set (a folder with ``train.rec``, ``train.idx``, ``property``, or a ``.rec``).
        out_folder: the image folder to write; must not exist, unless ``overwrite=True``.
        overwrite: replace an existing ``out_folder`` and start over a partial folder of another set.
            Only a folder that holds nothing but numbered folders at its top (what this function
            writes) is deleted; anything else raises ValueError.
        progress: called with (images written or found, total) at the start and after every image.
    Returns:
        ``out_folder`` as a Path (open it with :class:`ImageFolderDataset`).
    Raises:
        FileNotFoundError: no RecordIO set at ``root``. FileExistsError: ``out_folder`` exists.
        ValueError: image bytes of an unknown format, a partial folder of another set, a folder that
            ``overwrite`` will not delete. RecordIOError: a bad record (names the file and byte offset).
    """
    dataset = RecordDataset(root)
    out = Path(out_folder)
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"out_folder: {out} exists (pass overwrite=True to replace it)")
        _check_unpacked(out)  # now, not after the unpack
    keys, labels = dataset.keys, dataset.labels.numpy()
    videos = None if dataset.videos is None else dataset.videos.numpy()
    digest = hashlib.sha256(keys.astype("<i8").tobytes() + labels.astype("<i8").tobytes()
                            + (b"" if videos is None else videos.astype("<i8").tobytes()))
    state = {"root": str(Path(root).resolve()), "images": len(dataset), "classes": dataset.num_classes,
             "listing": digest.hexdigest()}
    partial = out.with_name(out.name + ".partial")
    state_path = partial / _UNPACK_STATE
    if partial.is_dir() and any(partial.iterdir()):
        differences = _differences(_read_state(state_path), state)
        if differences:
            if not overwrite:
                raise ValueError(f"out_folder: {partial} holds an unfinished unpack of another set "
                                 f"({'; '.join(differences)}); pass overwrite=True (--overwrite) to start over")
            _check_unpacked(partial)
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    _write_state(state_path, state)

    def padded(values) -> str:
        return f"0{len(str(max(int(np.max(values, initial=0)), 0)))}d"

    label_width = padded([dataset.num_classes - 1])
    key_width, video_width = padded(keys), padded([] if videos is None else videos)
    for label in range(dataset.num_classes):
        (partial / format(label, label_width)).mkdir(exist_ok=True)
    if progress is not None:
        progress(0, len(dataset))
    for position in range(len(dataset)):
        _, payload = dataset._header(position)
        folder = partial / format(int(labels[position]), label_width)
        if videos is not None:
            folder = folder / format(int(videos[position]), video_width)
        path = folder / f"{int(keys[position]):{key_width}}.{_suffix(payload, dataset._source(position))}"
        if not (path.is_file() and path.stat().st_size == len(payload)):
            folder.mkdir(exist_ok=True)
            path.write_bytes(payload)
        if progress is not None:
            progress(position + 1, len(dataset))
    if out.exists():
        _check_unpacked(out)
        shutil.rmtree(out)
    os.rename(partial, out)
    (out / _UNPACK_STATE).unlink()
    return out


class ProgressLine:
    """A ``progress`` hook that prints ``<what>: done/total images (p %), r img/s, ETA h:mm:ss``.

    A line at most every ``every`` seconds, and one when ``done`` reaches ``total``. The first call only
    starts the clock: the rate counts the images of this run, not those a resume found, so the ETA
    holds after a resume.

    Args:
        what: the start of each line (``"pack"``, ``"unpack"``).
        every: seconds between lines.
        stream: where to print; default ``sys.stderr`` (looked up at each print).
        clock: seconds, monotonic (tests pass a fake clock).
    """

    def __init__(self, what: str, every: float = 5.0, stream=None, clock: Callable[[], float] = time.monotonic):
        self.what, self.every, self.stream, self.clock = what, every, stream, clock
        self._start: tuple[float, int] | None = None  # (time, done) at the first call
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if self._start is None:
            self._start, self._last = (now, done), now
            return
        if done < total and now - self._last < self.every:
            return
        self._last = now
        elapsed = now - self._start[0]
        rate = (done - self._start[1]) / elapsed if elapsed > 0 else 0.0
        eta = _duration((total - done) / rate) if rate > 0 else "?"
        print(f"{self.what}: {done}/{total} images ({100 * done / total:.0f} %), {rate:.0f} img/s, ETA {eta}",
              file=self.stream or sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _listing_hash(images: ImageFolderDataset) -> str:
    """SHA-256 of the folder's relative image paths with their labels and video ids, in packing order."""
    digest = hashlib.sha256()
    videos = [None] * len(images) if images.videos is None else images.videos.tolist()
    for path, label, video in zip(images.samples, images.labels.tolist(), videos):
        digest.update(f"{path.relative_to(images.root).as_posix()}\t{label}\t{video}\n".encode())
    return digest.hexdigest()


def _read_state(path: Path) -> dict:
    """The state file at ``path``, or {} when it is missing or unreadable (then nothing matches it)."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(path: Path, state: dict) -> None:
    """Write the state file whole or not at all (a temporary file renamed over it)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(temporary, path)


def _differences(saved: dict, state: dict) -> list[str]:
    """``key: saved then, current now`` for every key of ``state`` whose saved value differs."""
    return [f"{key}: {saved.get(key, 'missing')!r} then, {value!r} now" for key, value in state.items()
            if saved.get(key, "missing") != value]


def _check_unpacked(folder: Path) -> None:
    """Raise unless ``folder`` holds only what :func:`unpack_record_dataset` writes at its top (numbered
    folders, its state file): ``overwrite=True`` deletes such a folder and never a mistyped path."""
    if not folder.is_dir():
        raise ValueError(f"out_folder: {folder} is not a folder; overwrite=True replaces only a folder unpack wrote")
    for entry in os.scandir(folder):
        if not (entry.name == _UNPACK_STATE or (entry.is_dir(follow_symlinks=False) and entry.name.isdigit())):
            raise ValueError(f"out_folder: {folder} holds {entry.name!r}, which unpack does not write; overwrite=True "
                             f"replaces only a folder of numbered identity folders, so it is left alone")


def _suffix(payload: memoryview, source: str) -> str:
    """The file suffix of encoded image bytes, from their first bytes."""
    head = bytes(payload[:12])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for magic, suffix in _MAGICS:
        if head.startswith(magic):
            return suffix
    raise ValueError(f"{source}: the image bytes are not JPEG, PNG, BMP, WebP or TIFF (they begin with "
                     f"{head[:8].hex(' ')}); an image folder cannot hold them")
