"""Image folders: ``root/<identity>/<image>``, or ``root/<identity>/<video>/<frame>`` with video ids."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ._args import check_int
from ._skip import SkipBadItems
from .codec import DecodeError, decode_image
from .landmarks import ALIGN_SIZE, LandmarkTable, align_face, landmark_table

__all__ = ["ImageFolderDataset", "IMAGE_EXTENSIONS", "PathArray"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

_LAYOUTS = "root/<identity>/<image> or root/<identity>/<video>/<frame>, one depth throughout"


def _listing(folder: Path, suffixes: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(image file names, subfolder names) of ``folder``, sorted, hidden entries left out."""
    files, folders = [], []
    for entry in os.scandir(folder):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            folders.append(entry.name)
        elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in suffixes:
            files.append(entry.name)
    return sorted(files), sorted(folders)


class PathArray(Sequence):
    """N file paths under ``root`` held as one byte buffer and an offsets array, not N Path objects:
    42M Paths take gigabytes, and DataLoader workers forked from a process holding them copy the pages
    that reference counting touches. ``paths[i]`` is a Path; slices give lists.

    Args:
        root: the folder the names are relative to.
        names: the N relative paths (str, ``/``-separated).
    """

    def __init__(self, root: Path, names: Sequence[str]):
        encoded = [os.fsencode(name) for name in names]  # surrogate-escaped names round-trip
        self.root = root
        self._bytes = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self._ends = np.cumsum([len(name) for name in encoded], dtype=np.int64)

    def __len__(self) -> int:
        return self._ends.size

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} paths")
        index %= len(self)
        start = int(self._ends[index - 1]) if index else 0
        return self.root / os.fsdecode(self._bytes[start:int(self._ends[index])].tobytes())


class ImageFolderDataset(SkipBadItems, Dataset):
    """Face images in one subfolder per identity, optionally one sub-subfolder per video.

    Identity ``i`` is the ``i``-th subfolder of ``root`` in sorted name order. Two layouts:

    - ``root/<identity>/<image>``: the identity's images are the files with one of ``extensions``
      (case-insensitive) in its folder; ``videos`` is None.
    - ``root/<identity>/<video>/<frame>`` (e.g. frames extracted from VoxCeleb2 or YouTube Faces):
      the identity's images are the frames of its video folders, video by video; ``videos[i]`` is
      the index of image i's video folder among all video folders, in sorted (identity, video)
      order, so video ids are unique across the dataset.

    Files and folders are taken in sorted name order, so the order depends only on the names, never
    on the file system's listing order. Files directly in ``root``, files of other extensions and
    hidden entries (names starting with ".") are ignored. A root with no subfolders is an empty
    dataset; an identity folder (or video folder) without images keeps its label (``num_classes``
    counts it) and contributes no sample. Mixing the two depths (an identity folder with both images
    and subfolders, identities of both kinds, a video folder with subfolders) raises ValueError
    naming the folders.

    With ``landmarks`` (a sidecar CSV ``path,x1,y1,...,x5,y5`` with a row for every image, paths
    relative to the CSV's folder, :func:`pyfacex.data.landmarks.read_landmarks_csv`, or its table)
    every image is aligned by its five points as insightface aligns faces
    (:func:`pyfacex.data.landmarks.align_face`) to ``image_size`` × ``image_size`` before ``transform``:
    a folder of photos or loose crops becomes a folder of aligned faces.

    Args:
        root: the folder.
        transform: optional callable applied to each image (uint8 (3, H, W)).
        extensions: the file suffixes that are images.
        landmarks: a landmark sidecar (path or table), or None (the images are used as stored).
        image_size: the side of the aligned faces (with ``landmarks`` only), >= 1.
        on_error: ``"raise"`` (default): an undecodable or unreadable file raises, naming it.
            ``"skip"``: ``dataset[i]`` of such a file returns the next readable image (``i+1``, ...,
            wrapping round) with its own label, counts it in :attr:`skipped` and warns (as
            :class:`~pyfacex.data.RecordDataset`'s ``on_error``).

    Attributes:
        classes: the subfolder names; ``classes[label]`` is the identity of ``label``.
        samples: the N image paths (a :class:`PathArray` of Path), grouped by label.
        labels: int64 tensor (N,), the label of each sample.
        videos: int64 tensor (N,), the video id of each sample, or None for ``root/<identity>/<image>``.
        points: float32 (N, 5, 2), the five points of each sample (with ``landmarks``), or None.
        skipped, skip_log: bad files met with ``on_error="skip"`` in this process, and the file their
            errors are appended to (None; trainers set it).

    ``dataset[i]`` is ``(image, label)``: the decoded image, RGB uint8 (3, H, W) (or what
    ``transform`` makes of it), and the int label. An undecodable file raises
    :class:`~pyfacex.data.codec.DecodeError` naming it; an image the sidecar has no row for raises
    KeyError naming it when the dataset is built.
    """

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None,
                 extensions: Iterable[str] = IMAGE_EXTENSIONS, *,
                 landmarks: LandmarkTable | str | os.PathLike | None = None, image_size: int = ALIGN_SIZE,
                 on_error: str = "raise"):
        self._set_on_error(on_error)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"root: image folder {self.root} does not exist or is not a directory")
        if isinstance(extensions, str):
            raise TypeError(f"extensions: expected a sequence of suffixes such as ('.jpg', '.png'), got the "
                            f"string {extensions!r}")
        suffixes = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
        self.transform = transform
        self.classes = sorted(entry.name for entry in os.scandir(self.root)
                              if entry.is_dir() and not entry.name.startswith("."))
        listings = [_listing(self.root / name, suffixes) for name in self.classes]
        by_video = next((name for name, (_, folders) in zip(self.classes, listings) if folders), None)
        samples, labels, videos, video_id = [], [], [], 0
        for label, (name, (files, folders)) in enumerate(zip(self.classes, listings)):
            folder = self.root / name
            if files and by_video is not None:
                where = "its subfolder " + folders[0] if folders else f"{self.root / by_video}'s video folders"
                raise ValueError(f"root: {folder} holds images ({files[0]}) beside {where}; expected {_LAYOUTS}")
            if by_video is None:
                samples += [f"{name}/{file}" for file in files]
                labels += [label] * len(files)
                continue
            for video in folders:
                frames, deeper = _listing(folder / video, suffixes)
                if deeper:
                    raise ValueError(f"root: video folder {folder / video} holds a subfolder ({deeper[0]}); "
                                     f"expected {_LAYOUTS}")
                samples += [f"{name}/{video}/{frame}" for frame in frames]
                labels += [label] * len(frames)
                videos += [video_id] * len(frames)
                video_id += 1
        self.samples = PathArray(self.root, samples)
        self.labels = torch.tensor(labels, dtype=torch.int64)
        self.videos = None if by_video is None else torch.tensor(videos, dtype=torch.int64)
        self.image_size = check_int("image_size", image_size, 1)
        self.points = None if landmarks is None else landmark_table(landmarks).points_of(self.samples)

    @property
    def num_classes(self) -> int:
        """Number of identity folders."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, index: int):
        path = self.samples[index]
        image = decode_image(path.read_bytes(), source=str(path))
        if self.points is not None:
            image = align_face(image, self.points[index], self.image_size)
        return image, int(self.labels[index])

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for an ImageFolderDataset of {len(self)} images")
        image, label = self._read_or_next(index % len(self), self._load, (DecodeError, OSError),
                                          lambda: DecodeError(f"{self.root}: no readable image ({len(self)} tried)"))
        if self.transform is not None:
            image = self.transform(image)
        return image, label
