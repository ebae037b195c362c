"""Face image files decoded (and aligned) in DataLoader worker processes, in batches of one size.

Decoding and aligning run in ``num_workers`` processes while the model runs in the main one
(``pyfacex eval --workers N``); batches come back in file order, so the features of every number
of workers are the same.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from ..data._args import check_int
from ..data.landmarks import load_face

__all__ = ["FaceFiles", "SameSizeBatch", "face_batches"]


class FaceFiles(Dataset):
    """Image files as ``(index, uint8 (3, H, W))``: aligned by ``points[index]`` (5, 2) to a square of side
    ``size[0]`` when ``points`` (N, 5, 2) is given, else decoded and resized to ``size`` (H, W) when
    given (:func:`pyfacex.data.landmarks.load_face`). Picklable (worker processes)."""

    def __init__(self, paths: Sequence[str | os.PathLike], size: tuple[int, int] | None = None,
                 points: torch.Tensor | None = None):
        self.paths, self.size, self.points = paths, size, points

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, index: int) -> Path:
        """The file of item ``index``."""
        return Path(self.paths[index])

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        return index, load_face(self.paths[index], self.size, None if self.points is None else self.points[index])


class SameSizeBatch:
    """Collates ``(index, image)`` items into (indices (B,), images (B, 3, H, W)); images of another size
    than the batch's first raise a ValueError naming both files (``path_of(index)``). Picklable when
    ``path_of`` is (a dataset's bound method is)."""

    def __init__(self, path_of: Callable[[int], Path]):
        self.path_of = path_of

    def __call__(self, items: list[tuple[int, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        first_index, first = items[0]
        for index, image in items:
            if image.shape != first.shape:
                raise ValueError(f"image_size: {self.path_of(index)} is {tuple(image.shape)} but "
                                 f"{self.path_of(first_index)} is {tuple(first.shape)}; a batch must share one "
                                 f"size: give image_size to resize the images")
        return torch.tensor([index for index, _ in items]), torch.stack([image for _, image in items])


def face_batches(paths: Sequence[str | os.PathLike], batch_size: int, size: tuple[int, int] | None = None,
                 points: torch.Tensor | None = None, num_workers: int = 0) -> Iterator[torch.Tensor]:
    """uint8 (B, 3, H, W) batches of the files in order (:class:`FaceFiles`), decoded by ``num_workers``
    worker processes (0: in this one). Raises ValueError naming the argument for a bad count, and
    :class:`SameSizeBatch`'s error when unresized images differ in size."""
    files = FaceFiles(paths, size, points)
    loader = DataLoader(files, batch_size=check_int("batch_size", batch_size, 1),
                        num_workers=check_int("num_workers", num_workers, 0), collate_fn=SameSizeBatch(files.path))
    for _, images in loader:
        yield images
