"""The IJB-A 1:1 verification protocol: 10 splits, template sets, TAR@FAR reported as mean ± std.

Layout (the real release and :func:`pyfacex.data.synthetic.protocols.write_ijba_like` alike):
``<root>/IJB-A_11_sets/split{n}/verify_metadata_{n}.csv`` and ``verify_comparisons_{n}.csv``
(:func:`~.readers.read_ijba_metadata`, :func:`~.readers.read_ijba_comparisons`; ``train_{n}.csv`` is
not needed to test), the images under ``<root>/images/`` at the CSVs' FILE paths (``img/533.JPG``,
``frame/28337_00300.png``). ``root`` may also be the ``IJB-A_11_sets`` folder itself (images then
under ``images/`` beside it). Every ``split1`` ... ``split10`` folder present is evaluated.

Protocol (LFENet, Sec. IV-A, Tab. I and III): every template is an unordered image set whose
feature a set function gives (:func:`~.evaluate.template_set_features`): the model's own (LFENet:
the LIT across the template in θ = 12 segments, then the mean of the embeddings) or the "Baseline
(Avg.)" row, the plain mean of the images' embeddings (:func:`pyfacex.eval.sets.mean_pooling`).
The paper's baseline rows are its original backbone (no LIT) evaluated with the mean, so run the
backbone's own model this way; the mean on an LFENet averages LFENet's per-image embeddings (each
image a set of one). Pairs are scored by the cosine of the L2-normalised template features, and TAR
at FAR 1e-3, 1e-2 and 1e-1 is measured on each split, then reported as the mean and the
(population) standard deviation over the splits. A template (same images in the same order) that
several splits list is embedded once.

Faces: each image is cropped to its face box (FACE_X, FACE_Y, FACE_WIDTH, FACE_HEIGHT: a square of
the box's longer side around its centre, :func:`pyfacex.eval.video.crop_face`) or, without box
columns, taken whole, then resized. IJB-A ships no five-point file, so the insightface alignment
IJB-B/C get (:func:`~.evaluate.evaluate_ijb`) has nothing to run on: the published IJB-A tables
re-detect five points with MTCNN or RetinaFace. Its metadata annotates three landmarks per image,
RIGHT_EYE (the subject's right eye, on the image's left), LEFT_EYE and NOSE_BASE; ``align=True``
aligns each image that has all three by them (the least-squares similarity onto the ArcFace
template's eyes and nose, :func:`pyfacex.data.landmarks.align_face`; blank ones keep the box crop).
It is not the default: three points have nothing to hold a yawed face's nose, which moves sideways,
so the fit turns and zooms yawed faces where five points would not (on IJB-A-like templates spread
over ±45° of yaw it cut a synthetic-trained model's TAR@FAR=1e-2 from 0.97 to 0.47), and the
annotated nose base sits below the nose tip the template places.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ...data._args import check_int
from ...data.codec import decode_image
from ...data.landmarks import align_face
from ..sets import SetFn
from ..video import crop_face
from .evaluate import template_set_features
from .protocols import TAR_CONVENTIONS, TemplateVerificationResult, verify_templates
from .readers import read_ijba_comparisons, read_ijba_metadata

__all__ = ["IJBA_FARS", "IJBAResult", "ijba_layout", "evaluate_ijba"]

IJBA_FARS = (1e-3, 1e-2, 1e-1)
"""The FARs of IJB-A's 1:1 tables (LFENet, Tab. I and III)."""

SETS_FOLDER = "IJB-A_11_sets"


@dataclass
class IJBAResult:
    """What :func:`evaluate_ijba` measures.

    Attributes:
        splits: the split numbers evaluated, ascending.
        per_split: one :class:`~.protocols.TemplateVerificationResult` per split.
        fars: (F,) float64 target FARs.
        mean, std: {convention: (F,) float64} TAR at each FAR averaged over the splits and its
            population standard deviation ("nearest" and "interpolated" conventions; NaN where a
            split has no genuine or no impostor pair).
        images, aligned: the distinct images embedded, and how many of them were aligned by their
            landmarks (the others were cropped to their face box).
        template_feats, template_ids, template_splits: the features scored, split after split: (T, d)
            as the set function returned them (pairs are scored on their L2-normalised rows), and the
            (T,) int64 template id and split number of each row. A template of several splits has a
            row in each.
    """

    splits: list[int]
    per_split: list[TemplateVerificationResult]
    fars: torch.Tensor
    mean: dict[str, torch.Tensor]
    std: dict[str, torch.Tensor]
    images: int = 0
    aligned: int = 0
    template_feats: torch.Tensor | None = None
    template_ids: torch.Tensor | None = None
    template_splits: torch.Tensor | None = None

    def as_dict(self) -> dict:
        """JSON-ready: splits, pairs per split, images and aligned images, and {convention: {repr(far):
        [mean, std] or None}}."""
        def cell(m: float, s: float):
            return [m, s] if math.isfinite(m) and math.isfinite(s) else None
        return {"splits": self.splits, "pairs": [len(r.labels) for r in self.per_split], "images": self.images,
                "aligned_images": self.aligned,
                "tar": {c: {repr(f): cell(m, s) for f, m, s in zip(self.fars.tolist(), self.mean[c].tolist(),
                                                                   self.std[c].tolist())}
                        for c in self.mean}}

    def table(self) -> str:
        """TAR (%) mean ± std at each FAR, one row per convention."""
        head = ["convention"] + [f"FAR={f:g}" for f in self.fars.tolist()]
        rows = [[c] + ["n/a" if math.isnan(m) else f"{100 * m:.2f} ± {100 * s:.2f}"
                       for m, s in zip(self.mean[c].tolist(), self.std[c].tolist())] for c in self.mean]
        widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
        lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in [head] + rows]
        return "\n".join([f"IJB-A 1:1 verification: {len(self.splits)} splits, TAR (%)"] + lines)


def ijba_layout(root: str | os.PathLike) -> tuple[Path, Path, list[int]]:
    """(the split folder root, the image root, the split numbers present) of an IJB-A folder.

    Raises:
        FileNotFoundError naming ``root`` when it holds no ``split{n}/verify_metadata_{n}.csv``.
    """
    root = Path(root)
    sets = root / SETS_FOLDER if (root / SETS_FOLDER).is_dir() else root
    splits = [n for n in range(1, 11) if (sets / f"split{n}" / f"verify_metadata_{n}.csv").is_file()]
    if not splits:
        raise FileNotFoundError(f"root: {root} holds no IJB-A 1:1 split (expected {SETS_FOLDER}/split1/"
                                f"verify_metadata_1.csv ... or split1/verify_metadata_1.csv)")
    images = sets.parent / "images"
    return sets, images if images.is_dir() else sets.parent, splits


class _Images:
    """Loads image k of a list of (file, box or None, landmarks or None): decoded, then aligned by its
    three landmarks when given, else cropped to its box (or whole) and resized. Picklable (workers)."""

    def __init__(self, folder: Path, images: list[tuple[str, tuple[float, ...] | None, tuple[float, ...] | None]],
                 size: int):
        self.folder, self.images, self.size = folder, images, size

    def __call__(self, index: int) -> torch.Tensor:
        file, box, landmarks = self.images[index]
        path = self.folder / file
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: an image of the IJB-A metadata is missing") from None
        image = decode_image(data, source=str(path))
        if landmarks is not None:
            return align_face(image, torch.tensor(landmarks, dtype=torch.float64).view(3, 2), self.size)
        if box is not None:
            x, y, w, h = box
            box = torch.tensor([x + w / 2, y + h / 2, w, h])   # crop_face takes the centre
        return crop_face(image, box, self.size)


def _rows(metadata, align: bool) -> list[tuple]:
    """(file, box or None, landmarks or None) of every row: landmarks only when aligning and all are given."""
    boxes = [None] * len(metadata.files) if metadata.boxes is None else [tuple(b) for b in metadata.boxes.tolist()]
    points = [None] * len(metadata.files)
    if align and metadata.landmarks is not None:
        given = torch.isfinite(metadata.landmarks).flatten(1).all(1).tolist()
        points = [tuple(p) if ok else None for p, ok in zip(metadata.landmarks.flatten(1).tolist(), given)]
    return list(zip(metadata.files, boxes, points))


def evaluate_ijba(root: str | os.PathLike, set_fn: SetFn, *, image_size: int = 112, align: bool = False,
                  fars: Sequence[float] = IJBA_FARS, max_images: int = 256, num_workers: int = 0,
                  chunk: int = 8192, progress: bool = False) -> IJBAResult:
    """Run the IJB-A 1:1 protocol (module docstring) with ``set_fn`` as the template feature.

    Args:
        root: the folder holding ``IJB-A_11_sets/`` and ``images/`` (or ``IJB-A_11_sets`` itself).
        set_fn: :data:`pyfacex.eval.sets.SetFn` on uint8 (N, 3, S, S) images -> (b, d) template
            features, e.g. :func:`pyfacex.eval.sets.model_set_fn` or :func:`pyfacex.eval.sets.mean_pooling`.
        image_size: S, the side of every face crop.
        align: align each image by its three annotated landmarks where the CSV gives them (module
            docstring: not the default); False: crop every image to its face box.
        fars: target FARs. max_images, num_workers, progress: of :func:`pyfacex.eval.sets.embed_sets`.
        chunk: pairs scored at once (:func:`~.protocols.verify_templates`).
    Returns:
        :class:`IJBAResult`.
    Raises:
        FileNotFoundError naming a missing split or image; ValueError naming the file and line of a
        malformed CSV or a pair naming a template not in the split's metadata.
    """
    size = check_int("image_size", image_size, 1)
    sets_root, image_root, splits = ijba_layout(root)
    images: dict[tuple, int] = {}      # (file, box, landmarks) -> its index in the image list
    templates: dict[tuple[int, ...], int] = {}   # the template's image indices -> its row of the features
    split_rows = []
    for n in splits:
        folder = sets_root / f"split{n}"
        metadata = read_ijba_metadata(folder / f"verify_metadata_{n}.csv")
        pairs = read_ijba_comparisons(folder / f"verify_comparisons_{n}.csv", metadata)
        members: dict[int, list[int]] = {}
        for row, template in zip(_rows(metadata, align), metadata.template_ids.tolist()):
            members.setdefault(template, []).append(images.setdefault(row, len(images)))
        ids = sorted(members)
        rows = [templates.setdefault(tuple(members[t]), len(templates)) for t in ids]
        split_rows.append((torch.tensor(ids, dtype=torch.int64), torch.tensor(rows, dtype=torch.int64), pairs))
    # every distinct template is one set: its row number is the "template id" of each of its images
    listed = list(images)
    owner = torch.tensor([row for row, indices in enumerate(templates) for _ in indices], dtype=torch.int64)
    load = _Images(image_root, [listed[k] for indices in templates for k in indices], size)
    _, features = template_set_features(set_fn, owner, load, max_images=max_images, num_workers=num_workers,
                                        progress=progress)
    results = [verify_templates(ids, features[rows], pairs, fars=fars, chunk=chunk, progress=False)
               for ids, rows, pairs in split_rows]
    targets = results[0].fars
    mean, std = {}, {}
    for convention in TAR_CONVENTIONS:
        table = torch.stack([r.tar[convention] for r in results])     # (splits, F)
        mean[convention] = table.mean(0)
        std[convention] = table.std(0, correction=0)
    return IJBAResult(splits, results, targets, mean, std, len(listed), sum(row[2] is not None for row in listed),
                      template_feats=torch.cat([features[rows] for _, rows, _ in split_rows]),
                      template_ids=torch.cat([ids for ids, _, _ in split_rows]),
                      template_splits=torch.cat([torch.full((len(ids),), n, dtype=torch.int64)
                                                 for n, (ids, _, _) in zip(splits, split_rows)]))
