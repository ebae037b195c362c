"""The embeddings of a set of image files, and the ``.npz`` file ``pyfacex embed`` writes.

The file holds plain arrays (``numpy.load(path)`` reads it without pickle):

==================  ===========================================================================
key                 content
==================  ===========================================================================
``paths``           (N,) str: the embedded images, as the input named them, in input order
``embeddings``      (N, d) float32, L2-normalised (cosine = dot product)
``norms``           (N,) float32: the norm of each raw feature before normalisation (the
                    flip-sum when ``flip``: about twice a single view's), the quality score
                    AdaFace, MagFace and QAFace read
``orientation``     (N,) uint8: the EXIF orientation tag of each file (1: upright or none)
``exif_applied``    () bool: whether the orientation was applied before the faces were cropped
``aligned``         () bool: whether faces were aligned by landmarks (else taken as crops)
``landmarks``       (N, 5, 2) float32 pixel x, y the faces were aligned by (only when ``aligned``)
``skipped``         (K,) str: images that could not be read (``--skip-bad``), and
``skipped_errors``  (K,) str: why
``model``           () str: the model file's name; ``image_size`` () int its input side;
``flip``            () bool: whether the mirrored faces' embeddings were added
==================  ===========================================================================
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..train.checkpoint import atomic_write

__all__ = ["FileEmbeddings", "save_embeddings", "load_embeddings"]


@dataclass
class FileEmbeddings:
    """What embedding a list of image files gave (fields as the keys of the module's table).

    Attributes:
        paths: N names of the embedded images; embeddings: float32 (N, d); norms: float32 (N,);
        orientation: uint8 (N,); landmarks: float32 (N, 5, 2) or None; skipped: K (name, error)
        pairs; exif_applied, flip: bools; model: str; image_size: int.
    """

    paths: list[str]
    embeddings: torch.Tensor
    norms: torch.Tensor
    orientation: torch.Tensor
    landmarks: torch.Tensor | None
    exif_applied: bool
    flip: bool
    model: str
    image_size: int
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _strings(values: list[str]) -> np.ndarray:
    return np.array(values, dtype=str) if values else np.zeros(0, dtype="<U1")


def save_embeddings(path: str | os.PathLike, result: FileEmbeddings) -> Path:
    """Write ``result`` to an ``.npz`` at ``path`` (atomically; the name is used as given)."""
    arrays = {"paths": _strings(result.paths), "embeddings": result.embeddings.numpy().astype(np.float32),
              "norms": result.norms.numpy().astype(np.float32),
              "orientation": result.orientation.numpy().astype(np.uint8),
              "exif_applied": np.array(result.exif_applied), "aligned": np.array(result.landmarks is not None),
              "skipped": _strings([name for name, _ in result.skipped]),
              "skipped_errors": _strings([error for _, error in result.skipped]),
              "model": np.array(result.model), "image_size": np.array(result.image_size, dtype=np.int64),
              "flip": np.array(result.flip)}
    if result.landmarks is not None:
        arrays["landmarks"] = result.landmarks.numpy().astype(np.float32)
    return atomic_write(path, lambda file: np.savez(file, **arrays))


def load_embeddings(path: str | os.PathLike) -> FileEmbeddings:
    """Read a file written by :func:`save_embeddings` (no pickle)."""
    with np.load(path, allow_pickle=False) as data:
        return FileEmbeddings(
            paths=data["paths"].tolist(), embeddings=torch.from_numpy(data["embeddings"]),
            norms=torch.from_numpy(data["norms"]), orientation=torch.from_numpy(data["orientation"]),
            landmarks=torch.from_numpy(data["landmarks"]) if bool(data["aligned"]) else None,
            exif_applied=bool(data["exif_applied"]), flip=bool(data["flip"]), model=str(data["model"]),
            image_size=int(data["image_size"]),
            skipped=list(zip(data["skipped"].tolist(), data["skipped_errors"].tolist())))
