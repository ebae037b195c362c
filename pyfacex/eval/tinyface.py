"""The TinyFace protocol: closed-set identification with distractors (rank-1/5/10/20, mAP).

The release (TinyFace, Cheng et al., ACCV 2018, qmul-tinyface.github.io) lays its test split out as

    <root>/Testing_Set/Probe/<id>_<n>.jpg                    3,728 probe images
    <root>/Testing_Set/Gallery_Match/<id>_<n>.jpg            4,443 gallery images of the probe people
    <root>/Testing_Set/Gallery_Distractor/*.jpg              153,428 distractors (people never probed)
    <root>/Testing_Set/probe_img_ID_pairs.mat                probe_set: (N, 1) cell of names, probe_ids: (N, 1)
    <root>/Testing_Set/gallery_match_img_ID_pairs.mat        gallery_set, gallery_ids likewise

Every probe is searched in Gallery_Match + Gallery_Distractor. The probe and match lists come from
the .mat files (MATLAB Level 5, read by :func:`pyfacex.data.matfile.read_mat` without scipy) and
each name's ``<id>_`` prefix must agree with its id (the rule AdaFace's ``tinyface_helper.py``
labels by); distractors are every image of Gallery_Distractor in name order,
labelled :data:`DISTRACTOR_LABEL`, which no probe carries. AdaFace evaluates aligned copies of the
same images kept in another folder (``Probe/``, ``Gallery_Match/``, ``Gallery_Distractor/`` under
it): pass that folder as ``images``; or give the release's images a landmark sidecar
(``landmarks``: ``path,x1,y1,...,x5,y5`` rows, :func:`pyfacex.data.landmarks.read_landmarks_csv`)
and they are aligned by their five points as insightface aligns test faces. Scores are cosine
similarities of the features ``features_fn`` returns; the metrics and their tie rules are those of
:mod:`pyfacex.eval.ranking`.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data._args import check_int
from ..data.folder import IMAGE_EXTENSIONS
from ..data.landmarks import LandmarkTable, landmark_table
from ..data.matfile import read_mat
from .face_files import face_batches
from .ranking import IdentificationResult, identification

__all__ = ["DISTRACTOR_LABEL", "TINYFACE_RANKS", "TinyFaceProtocol", "evaluate_tinyface", "read_tinyface"]

DISTRACTOR_LABEL = -1
"""Gallery label of every distractor; the .mat ids are >= 0, so no probe matches a distractor."""

TINYFACE_RANKS = (1, 3, 5, 10, 20)
"""The ranks TinyFace reports: LGAF's Tab. 6 compares rank-1, rank-3 and rank-5."""

_SCORES_PER_BLOCK = 1 << 24   # default probes per block = this // gallery size (about 128 MB of temporaries)

# ----------------------------------------------------------------------------------------------------
# the protocol


@dataclass
class TinyFaceProtocol:
    """TinyFace's test split as lists.

    probe_paths: P image paths; probe_labels: (P,) int64.
    gallery_paths: G image paths, the Gallery_Match list then the distractors; gallery_labels: (G,)
    int64, :data:`DISTRACTOR_LABEL` for the last ``num_distractors``.
    """

    probe_paths: list[Path]
    probe_labels: torch.Tensor
    gallery_paths: list[Path]
    gallery_labels: torch.Tensor
    num_distractors: int


def _listing(mat: Path, names_var: str, ids_var: str, folder: Path) -> tuple[list[Path], list[int]]:
    """The (paths, labels) a TinyFace .mat lists, checked against the names' ``<id>_`` prefixes and the folder."""
    variables = read_mat(mat, (names_var, ids_var))
    names, ids = variables[names_var], variables[ids_var]
    if isinstance(names, np.ndarray) and names.size == 0:
        names = []  # an empty list may be saved as an empty double matrix
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{mat}: {names_var}: expected a cell array of file names")
    if not isinstance(ids, np.ndarray):
        raise ValueError(f"{mat}: {ids_var}: expected a numeric array of ids")
    ids = ids.reshape(-1)
    if len(ids) != len(names):
        raise ValueError(f"{mat}: {ids_var} holds {len(ids)} ids but {names_var} {len(names)} names")
    labels = []
    for i, (name, value) in enumerate(zip(names, ids.tolist())):
        if value != int(value) or value < 0:
            raise ValueError(f"{mat}: {ids_var} entry {i}: expected an int >= 0, got {value}")
        prefix = name.split("_")[0]
        if not prefix.isdigit() or int(prefix) != int(value):
            raise ValueError(f"{mat}: entry {i}: file name {name!r} does not start with its id {int(value)}_")
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{mat}: entry {i}: image {folder / name} not found")
        labels.append(int(value))
    return [folder / name for name in names], labels


def read_tinyface(root: str | os.PathLike, images: str | os.PathLike | None = None) -> TinyFaceProtocol:
    """Read TinyFace's test protocol (module docstring): the real release or ``write_tinyface_like``'s.

    Args:
        root: the folder holding ``Testing_Set/`` with the two ``*_img_ID_pairs.mat`` files.
        images: the folder holding ``Probe/``, ``Gallery_Match/``, ``Gallery_Distractor/`` (e.g.
            AdaFace's aligned copies); default ``root/Testing_Set``.
    Raises:
        FileNotFoundError naming the missing folder, list or image (with its .mat entry); ValueError
        naming the .mat and entry when ids and names disagree (see :func:`read_mat` for malformed files).
    """
    testing = Path(root) / "Testing_Set"
    folders = Path(images) if images is not None else testing
    for folder in (testing, folders / "Probe", folders / "Gallery_Match", folders / "Gallery_Distractor"):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: TinyFace folder not found")
    probe_paths, probe_labels = _listing(testing / "probe_img_ID_pairs.mat", "probe_set", "probe_ids",
                                         folders / "Probe")
    match_paths, match_labels = _listing(testing / "gallery_match_img_ID_pairs.mat", "gallery_set", "gallery_ids",
                                         folders / "Gallery_Match")
    distractors = sorted(p for p in (folders / "Gallery_Distractor").iterdir()
                         if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    labels = match_labels + [DISTRACTOR_LABEL] * len(distractors)
    return TinyFaceProtocol(probe_paths, torch.tensor(probe_labels, dtype=torch.int64), match_paths + distractors,
                            torch.tensor(labels, dtype=torch.int64), len(distractors))


def _embed(paths: Sequence[Path], features_fn: Callable[[torch.Tensor], torch.Tensor], *, batch_size: int,
           image_size: int, progress: bool, desc: str, landmarks: LandmarkTable | None = None,
           num_workers: int = 0) -> torch.Tensor:
    """Features of image files, ``batch_size`` at a time.

    Args:
        paths: image files (any format :func:`pyfacex.data.decode_image` reads).
        features_fn: uint8 (B, 3, image_size, image_size) -> (B, d) float features; called under
            ``torch.inference_mode()``.
        batch_size, image_size: images per call, side each image is resized (or aligned) to.
        landmarks: the sidecar to align every image by, or None.
        num_workers: DataLoader worker processes that decode (and align) the images.
    Returns:
        (N, d) float32 features on the CPU.
    Raises:
        DecodeError naming an unreadable file; ValueError naming ``features_fn`` and the image when the
        output has the wrong shape or a feature is NaN/inf or all zeros.
    """
    batch_size, image_size = check_int("batch_size", batch_size, 1), check_int("image_size", image_size, 1)
    points = None if landmarks is None else landmarks.points_of(paths)   # every image has its row, checked first
    parts, dim = [], None
    batches = face_batches([str(path) for path in paths], batch_size, (image_size, image_size), points, num_workers)
    starts = range(0, len(paths), batch_size)
    with torch.inference_mode():
        for start, images in zip(starts, tqdm(batches, total=len(starts), desc=desc, unit="batch",
                                               disable=not progress)):
            batch = paths[start:start + batch_size]
            out = torch.as_tensor(features_fn(images))
            if out.dim() != 2 or len(out) != len(batch) or (dim is not None and out.shape[1] != dim):
                want = f"({len(batch)}, {'d' if dim is None else dim})"
                raise ValueError(f"features_fn: expected features {want} for the batch from {batch[0]}, "
                                 f"got shape {tuple(out.shape)}")
            out = out.detach().to("cpu", torch.float32)
            bad = ~torch.isfinite(out).all(1) | (out == 0).all(1)
            if bool(bad.any()):
                raise ValueError(f"features_fn: the feature of {batch[int(bad.nonzero()[0])]} is NaN/inf or all zeros")
            dim = out.shape[1]
            parts.append(out)
    return torch.cat(parts) if parts else torch.zeros(0, dim or 0)


def evaluate_tinyface(root: str | os.PathLike, features_fn: Callable[[torch.Tensor], torch.Tensor], *,
                      batch_size: int = 256, image_size: int = 112, images: str | os.PathLike | None = None,
                      ranks: Sequence[int] = TINYFACE_RANKS, chunk: int | None = None,
                      progress: bool = False, landmarks: LandmarkTable | str | os.PathLike | None = None,
                      num_workers: int = 0, features: dict | None = None) -> IdentificationResult:
    """TinyFace rank-k and mAP of a feature extractor.

    Args:
        root, images: as for :func:`read_tinyface`.
        features_fn: uint8 RGB images (B, 3, image_size, image_size), resized from TinyFace's native
            ~20×16 px, -> (B, d) features (normalisation, flip fusion etc. are the caller's).
        batch_size: images per ``features_fn`` call; image_size: the side every image is resized to
            (bilinear, antialiased when shrinking) or, with ``landmarks``, aligned to.
        landmarks: a sidecar (CSV ``path,x1,y1,...,x5,y5`` or its
            :class:`~pyfacex.data.landmarks.LandmarkTable`) with a row for every probe and gallery
            image: each is aligned by its five points (:func:`pyfacex.data.landmarks.align_face`).
        ranks: the reported ranks (default :data:`TINYFACE_RANKS`: 1, 3, 5 as LGAF's Tab. 6, and 10, 20).
        chunk: probes scored at once; default such that a block holds about 16M scores.
        num_workers: DataLoader worker processes that decode (and align) the images (0: this one).
        features: a dict that receives the features ranked, as numpy arrays: ``probe_feats`` (P, d) and
            ``gallery_feats`` (G, d) float32 (as ``features_fn`` returned them), ``probe_labels`` (P,) and
            ``gallery_labels`` (G,) int64 (distractors :data:`DISTRACTOR_LABEL`); None: not kept.
    Returns:
        :class:`~pyfacex.eval.ranking.IdentificationResult` (closed set: no FPIRs), e.g.
        ``result.rank[1]``, ``result.mean_average_precision``.
    """
    protocol = read_tinyface(root, images)
    if not protocol.gallery_paths:
        raise ValueError(f"{Path(root) / 'Testing_Set'}: the TinyFace gallery is empty")
    options = dict(batch_size=batch_size, image_size=image_size, progress=progress, num_workers=num_workers,
                   landmarks=None if landmarks is None else landmark_table(landmarks))
    probe = _embed(protocol.probe_paths, features_fn, desc="TinyFace probes", **options)
    gallery = _embed(protocol.gallery_paths, features_fn, desc="TinyFace gallery", **options)
    if features is not None:
        features.update(probe_feats=probe.numpy(), gallery_feats=gallery.numpy(),
                        probe_labels=protocol.probe_labels.numpy(), gallery_labels=protocol.gallery_labels.numpy())
    if chunk is None:
        chunk = max(1, _SCORES_PER_BLOCK // len(gallery))
    return identification(probe, protocol.probe_labels, gallery, protocol.gallery_labels, ranks=ranks, fpirs=(),
                          chunk=chunk, progress=progress)
