"""Which images to embed: a folder, a list file or a CSV with landmarks (and a landmark sidecar).

- a **folder**: every image file under it (recursively, extensions of
  :data:`pyfacex.data.IMAGE_EXTENSIONS`, case-insensitive; hidden files and folders skipped), in
  sorted order of their paths relative to the folder, which name them;
- a **CSV** (``.csv``): one image a row, ``path[,landmarks]``; the landmarks are 10 numbers (five
  points x1, y1, ..., x5, y5 in insightface's order: image-left eye, image-right eye, nose tip,
  image-left and image-right mouth corner) or 136 (68 iBUG points x, y, reduced to five by
  :func:`pyfacex.align.five_points`). A first row whose second field is not a number (or that is just
  ``path``) is a header. Either every row has landmarks or none (with ``allow_missing``, rows without
  are kept with NaN landmarks, e.g. photos where the detector found no face, for the embedding to
  skip);
- any other **file**: a list, one path a line (blank lines and lines starting with ``#`` skipped).

Paths in a list or CSV are taken as written (they name the images in the output); relative ones are
relative to the folder of the list or CSV. Landmarks may also come from a separate sidecar CSV
(``path,x1,y1,...,x5,y5``, :func:`pyfacex.data.landmarks.read_landmarks_csv`, the format evaluation
reads): :func:`attach_landmarks`. Landmarks are pixel coordinates in the photo as displayed,
i.e. after its EXIF orientation (what a detector reading it with ``cv2.imread`` or Pillow's
``exif_transpose`` finds), unless the orientation is not applied.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..align import five_points
from ..data.folder import IMAGE_EXTENSIONS
from ..data.landmarks import LandmarkTable

__all__ = ["ImageList", "list_images", "attach_landmarks", "has_landmarks"]

_LANDMARK_COUNTS = (10, 136)
_UNKNOWN = torch.full((5, 2), float("nan"), dtype=torch.float64)   # the landmarks of an image that has none


@dataclass(frozen=True)
class ImageList:
    """The images of an INPUT.

    Attributes:
        names: N strings naming the images (as written in the list / CSV, or relative to the folder).
        files: N paths to read them from.
        landmarks: float64 (N, 5, 2) pixel x, y, or None (the images are aligned crops). An image
            whose landmarks are unknown (``allow_missing``) has a row of NaN.
    """

    names: list[str]
    files: list[Path]
    landmarks: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.names)


def _walk(folder: Path) -> list[Path]:
    found = []
    for directory, subfolders, files in os.walk(folder):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]   # os.walk descends into what is left
        found += [Path(directory) / f for f in files
                  if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _resolve(name: str, base: Path) -> Path:
    path = Path(name).expanduser()
    return path if path.is_absolute() else base / path


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value


def _landmark_row(fields: list[str], where: str) -> torch.Tensor:
    if len(fields) not in _LANDMARK_COUNTS:
        raise ValueError(f"{where}: expected a path and 10 (5 points) or 136 (68 points) landmark numbers, "
                         f"got a path and {len(fields)}")
    values = [_number(f.strip()) for f in fields]
    if any(v is None or not math.isfinite(v) for v in values):
        bad = next(f for f, v in zip(fields, values) if v is None or not math.isfinite(v))
        raise ValueError(f"{where}: expected finite landmark numbers, got {bad.strip()!r}")
    return five_points(torch.tensor(values, dtype=torch.float64).reshape(-1, 2))


def _read_csv(path: Path) -> tuple[list[str], list[torch.Tensor | None]]:
    """(paths, landmarks or None per row) of a ``path[,numbers]`` CSV; the header row skipped."""
    names, points = [], []
    with open(path, newline="", encoding="utf-8-sig") as file:   # -sig: a spreadsheet's byte-order mark
        for line, row in enumerate(csv.reader(file), start=1):
            if not row or not "".join(row).strip():
                continue
            name, numbers = row[0].strip(), [f for f in row[1:] if f.strip()]
            if not names and (name.lower() == "path" or (numbers and _number(numbers[0].strip()) is None)):
                continue                                   # a header: path[,x1,y1,...]
            if not name:
                raise ValueError(f"{path}, line {line}: expected an image path in the first field")
            names.append(name)
            points.append(_landmark_row(numbers, f"{path}, line {line}") if numbers else None)
    return names, points


def list_images(source: str | os.PathLike, allow_missing: bool = False) -> ImageList:
    """The images of a folder, list file or CSV (module docstring), in order.

    Args:
        source: the folder, list file or CSV.
        allow_missing: a CSV may mix rows with and without landmarks (NaN rows for the latter).
    Raises:
        FileNotFoundError for a missing ``source``; ValueError naming the file and line of a bad CSV row,
        or a CSV mixing rows with and without landmarks (unless ``allow_missing``).
    """
    source = Path(source)
    if source.is_dir():
        files = _walk(source)
        return ImageList([f.relative_to(source).as_posix() for f in files], files)
    if not source.is_file():
        raise FileNotFoundError(f"INPUT: {source} does not exist (expected a folder of images, a list file or a CSV)")
    if source.suffix.lower() == ".csv":
        names, points = _read_csv(source)
        given = [p is not None for p in points]
        if any(given) and not all(given) and not allow_missing:
            first, other = given.index(True), given.index(False)
            raise ValueError(f"INPUT: {source}: {names[first]!r} has landmarks and {names[other]!r} has none; "
                             f"give every row its landmarks, or none (then the images must be aligned crops)")
        landmarks = torch.stack([_UNKNOWN if p is None else p for p in points]) if any(given) else None
        return ImageList(names, [_resolve(n, source.parent) for n in names], landmarks)
    names = []
    with open(source, encoding="utf-8-sig") as file:
        for text in file:
            text = text.strip()
            if text and not text.startswith("#"):
                names.append(text)
    return ImageList(names, [_resolve(n, source.parent) for n in names])


def attach_landmarks(images: ImageList, table: LandmarkTable, source: str = "landmarks",
                     allow_missing: bool = False) -> ImageList:
    """``images`` with the landmarks of a sidecar (:func:`pyfacex.data.landmarks.read_landmarks_csv`)
    for every image, matched by path.

    Args:
        images: the images (without landmarks).
        table: the sidecar's rows.
        source: what to name in errors.
        allow_missing: an image without a row gets NaN landmarks (to be skipped) instead of an error.
    Raises:
        ValueError naming ``source`` when ``images`` has landmarks already or an image has no row.
    """
    if images.landmarks is not None:
        raise ValueError(f"{source}: the INPUT CSV has landmarks already; give them in one place")
    rows = []
    for name, file in zip(images.names, images.files):
        row = table.find(file)
        if row is None and not allow_missing:
            where = table.source if table.source is not None else "the table"
            raise ValueError(f"{source}: {where} has no row for {name!r} ({file}); every image needs one "
                             f"(--skip-bad, or allow_missing=True, skips images without)")
        rows.append(_UNKNOWN if row is None else table.points[row].to(torch.float64))
    landmarks = torch.stack(rows) if rows else torch.empty(0, 5, 2, dtype=torch.float64)
    return ImageList(images.names, images.files, landmarks)


def has_landmarks(points: torch.Tensor) -> torch.Tensor:
    """Which rows of (..., 5, 2) landmarks are known (not the NaN rows of a missing image), (...,) bool."""
    return ~torch.isnan(points).all(-1).all(-1)
