"""Image folders: ``root/<identity>/<image>``, one subfolder per identity."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .codec import decode_image

__all__ = ["ImageFolderDataset", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageFolderDataset(Dataset):
    """Face images in one subfolder per identity.

    Identity ``i`` is the ``i``-th subfolder of ``root`` in sorted name order; its images are the
    files with one of ``extensions`` (case-insensitive) in that subfolder (not below it), in
    sorted name order. Files directly in ``root`` and hidden entries (names starting with ".") are
    ignored. The order depends only on the names, never on the file system's listing order. A root
    with no subfolders is an empty dataset; an identity folder without images keeps its label
    (``num_classes`` counts it) and contributes no sample.

    Args:
        root: the folder.
        transform: optional callable applied to each image (uint8 (3, H, W)).
        extensions: the file suffixes that are images.

    Attributes:
        classes: the subfolder names; ``classes[label]`` is the identity of ``label``.
        samples: the N image paths (list of Path), grouped by label.
        labels: int64 tensor (N,), the label of each sample.

    ``dataset[i]`` is ``(image, label)``: the decoded image, RGB uint8 (3, H, W) (or what
    ``transform`` makes of it), and the int label. An undecodable file raises
    :class:`~pyfacex.data.codec.DecodeError` naming it.
    """

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None,
                 extensions: Iterable[str] = IMAGE_EXTENSIONS):
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
        samples, labels = [], []
        for label, name in enumerate(self.classes):
            files = sorted(entry.name for entry in os.scandir(self.root / name)
                           if entry.is_file() and not entry.name.startswith(".")
                           and os.path.splitext(entry.name)[1].lower() in suffixes)
            samples += [self.root / name / file for file in files]
            labels += [label] * len(files)
        self.samples: list[Path] = samples
        self.labels = torch.tensor(labels, dtype=torch.int64)

    @property
    def num_classes(self) -> int:
        """Number of identity folders."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path = self.samples[index]
        image = decode_image(path.read_bytes(), source=str(path))
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])
