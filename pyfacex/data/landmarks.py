"""Landmark sidecars (CSV: image path, five points) and aligning a decoded image by its landmarks.

A sidecar gives the five alignment points of each image of a folder or a pair list whose images are
not aligned face crops (a detector's loose crops, whole photos), one row per image::

    path,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5
    lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg,101.2,117.5,146.9,116.8,124.3,142.0,105.8,165.4,143.1,164.9

Points are pixel x, y in the stored image (the top-left pixel's centre is (0, 0)) in insightface's
order: image-left eye, image-right eye, nose tip, image-left and image-right mouth corner (what
RetinaFace and insightface's ``*_name_5pts_score.txt`` give; :func:`pyfacex.align.five_points`
turns 68-point landmarks into them). A path is relative to the CSV's folder (or to ``root``) unless
absolute; a first row with no number in its ten number columns is a header. The images are then
aligned as insightface aligns its test faces: :func:`align_face`, the similarity onto the ArcFace
template (:func:`pyfacex.align.norm_crop`).
"""
from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..align import arcface_template, estimate_similarity, norm_crop, warp_affine
from ..align.template import check_image_size
from ._args import check_int
from .codec import decode_image, resize_image

__all__ = ["ALIGN_SIZE", "LandmarkTable", "read_landmarks_csv", "landmark_table", "align_face", "load_face"]

ALIGN_SIZE = 112
"""The side insightface aligns test faces to; a requested side that no ArcFace template exists for
(not a multiple of 112 or 128, e.g. 64) is aligned at this side, then resized."""


def _key(path: str | os.PathLike) -> str:
    """The lookup key of an image path: absolute, normalised, case-folded where the file system folds case."""
    return os.path.normcase(os.path.normpath(os.path.abspath(os.fspath(path))))


@dataclass
class LandmarkTable:
    """The five points of N images, read from a sidecar CSV (:func:`read_landmarks_csv`).

    Attributes:
        paths: N image paths as resolved (``root`` / the CSV's path, or the absolute path written).
        points: (N, 5, 2) float32 pixel x, y in insightface's order (module docstring).
        lines: (N,) the CSV line of each row (for messages).
        source: the CSV file, or None for a table built in memory.
    """

    paths: list[Path]
    points: torch.Tensor
    lines: list[int]
    source: Path | None = None
    _index: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.paths)

    def find(self, path: str | os.PathLike) -> int | None:
        """The row of ``path`` (compared as absolute, normalised paths), or None."""
        if self._index is None:
            self._index = {_key(p): i for i, p in enumerate(self.paths)}
        return self._index.get(_key(path))

    def points_of(self, paths: Sequence[str | os.PathLike]) -> torch.Tensor:
        """(len(paths), 5, 2) float32: the points of each image, in order.

        Raises:
            KeyError naming the first image the table has no row for, and the table's CSV.
        """
        rows = []
        for path in paths:
            row = self.find(path)
            if row is None:
                where = f"the landmarks file {self.source}" if self.source is not None else "the landmark table"
                raise KeyError(f"landmarks: {where} has no row for the image {path} (expected one row "
                               f"'path,x1,y1,...,x5,y5' per image to align)")
            rows.append(row)
        return self.points[torch.tensor(rows, dtype=torch.int64)] if rows else torch.zeros(0, 5, 2)


def _numbers(fields: Sequence[str]) -> list[float] | None:
    """The floats of ``fields``, or None when one does not parse."""
    try:
        return [float(f) for f in fields]
    except ValueError:
        return None


def read_landmarks_csv(path: str | os.PathLike, root: str | os.PathLike | None = None) -> LandmarkTable:
    """Read a landmark sidecar: ``path,x1,y1,...,x5,y5`` per row (module docstring).

    Args:
        path: the CSV file.
        root: the folder relative image paths start from (default: the CSV's folder).
    Returns:
        :class:`LandmarkTable`, rows in file order.
    Raises:
        FileNotFoundError naming a missing file; ValueError naming the file and line of a row that is
        not a path and 10 numbers, a number that is not finite, or an image listed twice.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"landmarks: {source} does not exist (expected a CSV 'path,x1,y1,...,x5,y5')")
    base = Path(root) if root is not None else source.parent
    paths, values, lines, seen = [], [], [], {}
    with open(source, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        for fields in reader:
            number = reader.line_num
            fields = [v.strip() for v in fields]
            if not any(fields):
                continue
            numbers = _numbers(fields[1:]) if len(fields) == 11 else None
            if number == 1 and len(fields) == 11 and all(_numbers([v]) is None for v in fields[1:]):
                continue   # a header row: no number at all (a row with one typo is an error, not a header)
            if numbers is None or not fields[0]:
                raise ValueError(f"{source}:{number}: expected 'path,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5' (an image "
                                 f"path and 10 numbers), got {','.join(fields)!r}")
            if not all(math.isfinite(v) for v in numbers):
                raise ValueError(f"{source}:{number}: expected finite coordinates, got {','.join(fields[1:])!r}")
            image = Path(fields[0])
            image = image if image.is_absolute() else base / image
            key = _key(image)
            if key in seen:
                raise ValueError(f"{source}:{number}: the image {fields[0]} is listed twice (first on line "
                                 f"{seen[key]})")
            seen[key] = number
            paths.append(image)
            values.append(numbers)
            lines.append(number)
    points = torch.tensor(values, dtype=torch.float32).reshape(-1, 5, 2)
    return LandmarkTable(paths, points, lines, source)


def landmark_table(landmarks: LandmarkTable | str | os.PathLike) -> LandmarkTable:
    """``landmarks`` as a :class:`LandmarkTable`: a table as it is, a path read by :func:`read_landmarks_csv`."""
    if isinstance(landmarks, LandmarkTable):
        return landmarks
    if not isinstance(landmarks, (str, os.PathLike)):
        raise TypeError(f"landmarks: expected a LandmarkTable or the path of a landmarks CSV, got "
                        f"{type(landmarks).__name__}")
    return read_landmarks_csv(landmarks)


def align_face(image: torch.Tensor, points, size: int = ALIGN_SIZE) -> torch.Tensor:
    """Align one face crop or photo by its landmarks, as insightface aligns test faces.

    Five points: :func:`pyfacex.align.norm_crop` (the least-squares similarity onto the ArcFace
    template, bilinear, black border). Three points (the two eyes and the nose, as IJB-A's
    metadata annotates them): the similarity that takes them onto the template's eyes and nose.
    A ``size`` that has no ArcFace template (not a multiple of 112 or 128) is aligned at
    :data:`ALIGN_SIZE` and resized (bilinear, antialiased), as a model of another input size would
    see insightface's 112 crops.

    Args:
        image: uint8 RGB (3, H, W).
        points: (5, 2) or (3, 2) pixel x, y in insightface's order (image-left eye first).
        size: the side of the aligned crop, >= 1.
    Returns:
        uint8 (3, size, size).
    Raises:
        TypeError / ValueError naming ``image``, ``points`` or ``size``.
    """
    size = check_int("size", size, 1)
    try:
        side = check_image_size(size)
    except ValueError:
        side = ALIGN_SIZE
    points = torch.as_tensor(points)
    if points.dim() != 2 or tuple(points.shape) not in ((5, 2), (3, 2)):
        raise ValueError(f"points: expected (5, 2) or (3, 2) pixel x, y (eyes, nose[, mouth corners]), "
                         f"got shape {tuple(points.shape)}")
    if len(points) == 5:
        crop = norm_crop(image, points, side)
    else:
        matrix = estimate_similarity(points.to(torch.float64), arcface_template(side)[:3])
        crop = warp_affine(image, matrix, side)
    return resize_image(crop, (size, size))


def load_face(path: str | os.PathLike, size: tuple[int, int] | None = None, points=None) -> torch.Tensor:
    """One image file as uint8 (3, H, W): aligned by its ``points`` (:func:`align_face`) to a square of
    side ``size[0]`` (:data:`ALIGN_SIZE` when ``size`` is None) when given, else decoded and resized
    to ``size`` = (H, W) when given.

    Raises:
        FileNotFoundError; :class:`~pyfacex.data.codec.DecodeError` naming an unreadable file.
    """
    data = Path(path).read_bytes()
    if points is None:
        return decode_image(data, source=str(path), size=size)
    return align_face(decode_image(data, source=str(path)), points, ALIGN_SIZE if size is None else size[0])
