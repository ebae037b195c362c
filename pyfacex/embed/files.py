"""Embedding image files: decoded, oriented and cropped in DataLoader workers, embedded in batches.

A file that cannot be read, decoded or aligned (or has no landmarks when the others have) stops
the run with an error naming it, unless ``skip_bad``: then it is left out and listed with the
reason. Workers never raise for a bad file (they hand back the reason), so the error names the file
the same way with or without workers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..data._args import check_int
from ..data.codec import DecodeError, decode_image
from ..data.exif import UPRIGHT, read_orientation
from .faces import prepare_faces
from .inputs import ImageList, has_landmarks
from .output import FileEmbeddings

__all__ = ["BadImageError", "FaceFiles", "embed_files"]


class BadImageError(ValueError):
    """An image file that cannot be read, decoded or aligned (the message names it)."""


class _NoLandmarks(Exception):
    """An image left without landmarks in a run that aligns (the message names it)."""


class FaceFiles(Dataset):
    """The faces of image files, ready for the model.

    ``dataset[i]`` is a dict: ``index`` i; ``face`` uint8 (3, S, S) (zeros when the file failed);
    ``orientation`` the file's EXIF orientation tag (1 when none); ``error`` "" or why the file failed.

    Args:
        images: the files (and their landmarks, or None for aligned crops).
        image_size: the model's side S.
        exif: apply the EXIF orientation before cropping.
    """

    def __init__(self, images: ImageList, image_size: int, exif: bool = True):
        self.images, self.image_size, self.exif = images, image_size, exif

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        path = self.images.files[index]
        orientation, error = UPRIGHT, ""
        face = torch.zeros(3, self.image_size, self.image_size, dtype=torch.uint8)
        landmarks = None if self.images.landmarks is None else self.images.landmarks[index]
        try:
            if landmarks is not None and not bool(has_landmarks(landmarks)):
                raise _NoLandmarks(f"{path}: no landmarks given for it (not in the landmarks CSV, or its row is empty)")
            data = path.read_bytes()
            orientation = read_orientation(data)
            image = decode_image(data, source=str(path), exif_orientation=self.exif)
            face = prepare_faces(image, landmarks, self.image_size, name=str(path))[0]
        except OSError as failure:
            error = f"{path}: cannot read the file ({failure.strerror or failure})"
        except DecodeError as failure:
            error = str(failure)
        except (TypeError, ValueError) as failure:   # e.g. landmarks that cannot be aligned
            error = f"{path}: cannot crop the face ({failure})"
        except _NoLandmarks as failure:
            error = str(failure)
        return {"index": index, "face": face, "orientation": orientation, "error": error}


def embed_files(embedder, images: ImageList, *, batch_size: int = 64, workers: int = 0, exif: bool = True,
                skip_bad: bool = False, progress: bool = False) -> FileEmbeddings:
    """Embed image files with a :class:`~pyfacex.embed.FaceEmbedder`.

    Args:
        embedder: the :class:`~pyfacex.embed.FaceEmbedder`.
        images: from :func:`~pyfacex.embed.list_images` (with landmarks: faces aligned by
            :func:`pyfacex.data.landmarks.align_face`; without: the files must be aligned face crops,
            resized to the model's side).
        batch_size: faces per forward pass (and per DataLoader batch).
        workers: DataLoader worker processes decoding and cropping (0: in this process).
        exif: apply each photo's EXIF orientation (landmarks then refer to the upright photo).
        skip_bad: leave out files that cannot be read, decoded or aligned (listed in ``skipped``)
            instead of raising.
        progress: a tqdm bar over the files.
    Returns:
        :class:`~pyfacex.embed.FileEmbeddings` in input order, skipped files left out.
    Raises:
        BadImageError naming the first bad file (without ``skip_bad``).
    """
    batch_size = check_int("batch_size", batch_size, 1)
    workers = check_int("workers", workers, 0)
    dataset = FaceFiles(images, embedder.image_size, exif)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    kept: list[int] = []
    orientation: list[int] = []
    skipped: list[tuple[str, str]] = []

    def good_batches():
        with tqdm(total=len(dataset), desc="embed", unit="img", disable=not progress) as bar:
            for batch in loader:
                good = []
                for row, (index, error) in enumerate(zip(batch["index"].tolist(), batch["error"])):
                    if not error:
                        good.append(row)
                    elif skip_bad:
                        skipped.append((images.names[index], error))
                    else:
                        raise BadImageError(f"{error} (--skip-bad, or skip_bad=True, leaves such files out)")
                kept.extend(batch["index"][good].tolist())
                orientation.extend(batch["orientation"][good].tolist())
                bar.update(len(batch["error"]))
                if good:
                    yield batch["face"][good]

    raw = embedder.features(good_batches())
    if raw.shape[0] == 0:
        raw = torch.zeros(0, embedder.embedding_size)
    rows = torch.tensor(kept, dtype=torch.int64)
    return FileEmbeddings(
        paths=[images.names[i] for i in kept], embeddings=F.normalize(raw, dim=1), norms=raw.norm(dim=1),
        orientation=torch.tensor(orientation, dtype=torch.uint8),
        landmarks=None if images.landmarks is None else images.landmarks[rows].float(),
        exif_applied=bool(exif), flip=embedder.flip, model=embedder.name, image_size=embedder.image_size,
        skipped=skipped)
