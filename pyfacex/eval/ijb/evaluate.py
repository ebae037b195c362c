"""End-to-end IJB-B/C evaluation from a release directory: images -> aligned faces -> features ->
templates -> 1:1 and 1:N.

Reads the layout of insightface's ``IJB_release`` (and of
:func:`pyfacex.data.synthetic.protocols.write_ijb_like`): ``<root>/IJBC/loose_crop/<image>`` and
``<root>/IJBC/meta/ijbc_*`` (IJB-B: ``IJBB``, ``ijbb_*``, galleries S1/S2 instead of G1/G2). The loose
crops are a detector's boxes with context, not aligned faces: each is aligned by its five points of
``*_name_5pts_score.txt`` (:func:`pyfacex.data.landmarks.align_face`, insightface's ``norm_crop``),
as insightface's ``eval_ijbc.py`` and AdaFace's IJB evaluation do, image by image in the Dataset (so
in the DataLoader's workers when there are any).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ...data import RaggedSetDataset
from ...data._args import check_int
from ...data.codec import decode_image
from ...data.landmarks import ALIGN_SIZE, align_face
from ...data.transforms import hflip
from ..face_files import SameSizeBatch
from ..sets import SetFn, embed_sets
from .protocols import FARS, OpenSetResult, TemplateVerificationResult, identify_templates, verify_templates
from .readers import (
    FaceTidMid,
    FivePoints,
    read_face_tid_mid,
    read_name_5pts_score,
    read_template_pairs,
    read_template_subjects,
)
from .templates import template_features

__all__ = ["IJBResult", "evaluate_ijb", "template_set_features"]

_GALLERIES = {"IJBC": ("G1", "G2"), "IJBB": ("S1", "S2")}


@dataclass
class IJBResult:
    """What :func:`evaluate_ijb` measures.

    Attributes:
        template_ids: (T,) int64 ascending; template_feats: (T, d) L2-normalised template features.
        verification: the 1:1 result (scores of every pair, TAR@FAR in two conventions).
        identification: the 1:N result per gallery and averaged, or None when not run.
    """

    template_ids: torch.Tensor
    template_feats: torch.Tensor
    verification: TemplateVerificationResult
    identification: OpenSetResult | None

    def as_dict(self) -> dict:
        """JSON-ready summary (no scores or features)."""
        return {"templates": len(self.template_ids), "verification": self.verification.as_dict(),
                "identification": None if self.identification is None else self.identification.as_dict()}

    def table(self) -> str:
        """The 1:1 table, then the 1:N tables."""
        parts = [self.verification.table()]
        if self.identification is not None:
            parts.append(self.identification.table())
        return "\n\n".join(parts)


class _Crops(Dataset):
    """The loose crops in meta-file order, decoded to uint8 (3, H, W): aligned by their five points
    to ``size`` when ``points`` are given, else resized to ``size`` if given. Picklable (workers)."""

    def __init__(self, folder: Path, names: list[str], size: tuple[int, int] | None,
                 points: torch.Tensor | None = None):
        self.folder, self.names, self.size, self.points = folder, names, size, points

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        return index, self.image(index)

    def path(self, index: int) -> Path:
        """The file of crop ``index``."""
        return self.folder / self.names[index]

    def image(self, index: int) -> torch.Tensor:
        """Crop ``index`` as uint8 (3, H, W) (a member loader of :func:`template_set_features`)."""
        path = self.path(index)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: image {index} of the meta files is missing") from None
        image = decode_image(data, source=str(path))
        if self.points is not None:
            return align_face(image, self.points[index], self.size[0])
        if self.size is not None and tuple(image.shape[1:]) != self.size:
            resized = F.interpolate(image.unsqueeze(0).float(), size=self.size, mode="bilinear", antialias=True,
                                    align_corners=False)
            image = resized.round_().clamp_(0, 255).to(torch.uint8).squeeze(0)
        return image


def _crop_size(image_size, align: bool) -> tuple[int, int] | None:
    """The (H, W) crops are made at: ``image_size`` checked; aligned crops are square, 112 by default."""
    if image_size is None:
        return (ALIGN_SIZE, ALIGN_SIZE) if align else None
    if isinstance(image_size, (int, str)) or len(image_size) != 2:
        raise ValueError(f"image_size: expected (H, W) or None, got {image_size!r}")
    size = tuple(check_int("image_size", v, 1) for v in image_size)
    if align and size[0] != size[1]:
        raise ValueError(f"image_size: aligned crops are square; expected (S, S), got {size} (or align=False to "
                         f"resize the stored crops)")
    return size


def _five_points(meta: Path, prefix: str, listing: FaceTidMid) -> FivePoints:
    """``*_name_5pts_score.txt``, checked to list the images of ``*_face_tid_mid.txt`` in its order."""
    points = read_name_5pts_score(meta / f"{prefix}_name_5pts_score.txt")
    if points.images != listing.images:
        row = next((i for i, (a, b) in enumerate(zip(points.images, listing.images)) if a != b),
                   min(len(points.images), len(listing.images)))
        raise ValueError(f"{points.source}: lists {len(points.images)} images, {listing.source} "
                         f"{len(listing.images)}; they differ at image {row} (expected the same images in the "
                         f"same order)")
    return points


def _extract(features_fn: Callable, crops: _Crops, flip: bool, batch_size: int, num_workers: int,
             progress: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(N, d) features of every crop, and of every flipped crop when ``flip``."""
    loader = DataLoader(crops, batch_size=batch_size, num_workers=num_workers,
                        collate_fn=SameSizeBatch(crops.path))
    out, out_flip = None, None
    with torch.no_grad():
        for indices, images in tqdm(loader, desc="IJB features", unit="batch", disable=not progress):
            views = [images, hflip(images)] if flip else [images]
            results = [torch.as_tensor(features_fn(view)) for view in views]
            for result in results:
                if result.dim() != 2 or len(result) != len(images) or not result.is_floating_point():
                    raise ValueError(f"features: expected the callable to return ({len(images)}, d) float features "
                                     f"for a batch of {len(images)} images, got {result.dtype} {tuple(result.shape)}")
            if out is None:
                d, dtype = results[0].shape[1], results[0].dtype
                out = torch.empty(len(crops), d, dtype=dtype)
                out_flip = torch.empty(len(crops), d, dtype=dtype) if flip else None
            out[indices] = results[0].detach().cpu().to(out.dtype)
            if flip:
                out_flip[indices] = results[1].detach().cpu().to(out.dtype)
    if out is None:
        raise ValueError(f"{crops.folder}: the meta files list no images")
    return out, out_flip


def template_set_features(set_fn: SetFn, template_ids: torch.Tensor, load: Callable[[int], torch.Tensor], *,
                          max_images: int = 256, num_workers: int = 0,
                          progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Template features by a set function: each template's images form one set (LFENet, Sec. IV-A:
    "we regard the template as an unordered image set").

    Args:
        set_fn: :data:`pyfacex.eval.sets.SetFn` on uint8 images, e.g. a model's own
            (:func:`pyfacex.eval.sets.model_set_fn`) or :func:`pyfacex.eval.sets.mean_pooling`.
        template_ids: (N,) int template of each image.
        load: image index -> uint8 (3, H, W); the images of one template must share a size.
        max_images, num_workers, progress: as :func:`pyfacex.eval.sets.embed_sets`.
    Returns:
        (template ids (T,) int64 ascending, features (T, d) as ``set_fn`` returns them, not normalised).
    """
    ids = torch.as_tensor(template_ids, dtype=torch.int64).reshape(-1)
    templates, inverse = torch.unique(ids, return_inverse=True)
    order = torch.argsort(inverse, stable=True)   # a template's images in file order
    members = order.split(torch.bincount(inverse, minlength=len(templates)).tolist())
    sets = [m.tolist() for m in members]
    features = embed_sets(set_fn, RaggedSetDataset(sets, load), max_images=max_images, num_workers=num_workers,
                          progress=progress, desc="IJB templates")
    return templates, features


def evaluate_ijb(root: str | os.PathLike, features: Callable[[torch.Tensor], torch.Tensor] | torch.Tensor | None, *,
                 target: str = "IJBC", flip: bool = True, detector_score: bool = True, align: bool = True,
                 image_size: tuple[int, int] | None = (112, 112), batch_size: int = 128, num_workers: int = 0,
                 fars: Sequence[float] = FARS, one_to_n: bool = True, ranks: Sequence[int] = (1, 5, 10, 20),
                 fpirs: Sequence[float] = (1e-2, 1e-1), chunk: int = 8192, progress: bool = True,
                 set_fn: SetFn | None = None, max_images: int = 256) -> IJBResult:
    """Evaluate face features on IJB-B or IJB-C (the real release or ``write_ijb_like`` output).

    Steps (insightface's ``eval_ijbc.py``, ``ijb_11.py`` / ``ijb_1n.py`` with its defaults F2, D1,
    N1): the images of ``*_face_tid_mid.txt`` are read from ``loose_crop/`` and aligned by their five
    points of ``*_name_5pts_score.txt`` (the similarity onto the ArcFace template, bilinear, black
    border: insightface's ``Embedding.get`` / ``norm_crop``, :func:`pyfacex.data.landmarks.align_face`;
    per image in the DataLoader's workers), featurised (plus their horizontal flips), each image's feature
    multiplied by its detector score from the same file, pooled into templates
    (:func:`template_features`), then 1:1 verification of ``*_template_pair_label.txt``
    (:func:`verify_templates`) and 1:N identification in each gallery (:func:`identify_templates`).
    These are the faces every published IJB-B/C table was measured on. ``align=False`` is for
    crops that are already aligned faces (e.g. a copy aligned beforehand): they are only resized
    to ``image_size`` (bilinear, antialiased); on the release's loose crops that framing is not the
    one a model trained on aligned faces expects, and its numbers are not comparable to published ones.

    With ``set_fn`` (and ``features=None``) each template is one set instead: its (aligned) images
    go through ``set_fn`` together (:func:`template_set_features`; e.g. LFENet's LIT across the
    template, Sec. IV-B), which gives the template feature; no media pooling, detector score or flip
    of this function applies (the set function does its own flip).

    Args:
        root: the directory holding ``IJBC/`` (or ``IJBB/``), or that directory itself.
        features: a callable mapping a uint8 batch (B, 3, H, W) to (B, d) float features (called under
            ``torch.no_grad``), or precomputed (N, d) features of the N images of ``*_face_tid_mid.txt``
            in its order (``flip`` and ``align`` then do not apply: they are the features' maker's).
        target: "IJBC" or "IJBB".
        flip: add the features of the horizontally flipped crops (callable only).
        detector_score: weigh each image by its detector score.
        align: align every crop by its five points (default); False: the stored crops, resized.
        image_size: (H, W) of the faces the features see: aligned crops are (S, S) (a side with no
            ArcFace template, e.g. 64, is aligned at 112 and resized), None = 112; without alignment
            every crop is resized to it, None keeping the stored sizes (a batch must then share one).
        batch_size, num_workers: of the image DataLoader.
        fars: 1:1 target FARs. one_to_n: also run 1:N. ranks, fpirs: 1:N figures.
        chunk: 1:1 pairs scored at once. progress: tqdm bars.
        set_fn: a set function on each template's uint8 images (see above), or None.
        max_images: bound on the images of one ``set_fn`` batch (a larger template goes alone).
    Returns:
        :class:`IJBResult`.
    Raises:
        FileNotFoundError naming a missing meta file or image; ValueError naming the file and line
        of a malformed meta line, image lists of the two meta files that disagree, a feature count
        that differs from the image list's, pairs or 1:N lists naming templates without images, and
        naming ``image_size`` when aligned crops are asked for a size that is not square.
    """
    if target not in _GALLERIES:
        raise ValueError(f"target: expected one of {', '.join(_GALLERIES)}, got {target!r}")
    root = Path(root)
    base = root / target if (root / target).is_dir() else root
    meta, prefix = base / "meta", target.lower()
    if not meta.is_dir():
        raise FileNotFoundError(f"{root}: expected the meta directory {root / target / 'meta'} (or {root / 'meta'})")
    listing = read_face_tid_mid(meta / f"{prefix}_face_tid_mid.txt")
    if set_fn is not None and features is not None:
        raise ValueError("features: expected None with set_fn (the set function embeds the templates)")
    if set_fn is None and features is None:
        raise ValueError("features: expected a callable or (N, d) features (or set_fn=), got None")
    embeds = set_fn is not None or callable(features)   # images are read (and aligned) here
    align = bool(align) and embeds
    points = _five_points(meta, prefix, listing) if align or (detector_score and set_fn is None) else None
    if embeds:
        check_int("num_workers", num_workers, 0)
        crops = _Crops(base / "loose_crop", listing.images, _crop_size(image_size, align),
                       points.points if align else None)
    if set_fn is not None:
        template_ids, template_feats = template_set_features(set_fn, listing.template_ids, crops.image,
                                                             max_images=max_images, num_workers=num_workers,
                                                             progress=progress)
        template_feats = template_feats / template_feats.norm(dim=1, keepdim=True)   # zero: NaN, refused below
        return _compare(template_ids, template_feats, meta, prefix, target, fars, one_to_n, ranks, fpirs, chunk,
                        progress)
    if callable(features):
        check_int("batch_size", batch_size, 1)
        image_feats, flip_feats = _extract(features, crops, flip, batch_size, num_workers, progress)
    else:
        image_feats, flip_feats = torch.as_tensor(features), None
        if image_feats.dim() != 2 or len(image_feats) != len(listing.images):
            raise ValueError(f"features: expected ({len(listing.images)}, d), one row per image of "
                             f"{listing.source}, got shape {tuple(image_feats.shape)}")
    scores = points.scores if detector_score else None
    template_ids, template_feats = template_features(image_feats, listing.template_ids, listing.media_ids,
                                                     scores=scores, flip_features=flip_feats)
    return _compare(template_ids, template_feats, meta, prefix, target, fars, one_to_n, ranks, fpirs, chunk, progress)


def _compare(template_ids, template_feats, meta: Path, prefix: str, target: str, fars, one_to_n: bool, ranks, fpirs,
             chunk: int, progress: bool) -> IJBResult:
    """1:1 verification of the meta pairs and (``one_to_n``) 1:N in each gallery, on template features."""
    verification = verify_templates(template_ids, template_feats,
                                    read_template_pairs(meta / f"{prefix}_template_pair_label.txt"), fars=fars,
                                    chunk=chunk, progress=progress)
    identification = None
    if one_to_n:
        galleries = {name: read_template_subjects(meta / f"{prefix}_1N_gallery_{name}.csv")
                     for name in _GALLERIES[target]}
        identification = identify_templates(template_ids, template_feats,
                                            read_template_subjects(meta / f"{prefix}_1N_probe_mixed.csv"), galleries,
                                            ranks=ranks, fpirs=fpirs, progress=progress)
    return IJBResult(template_ids, template_feats, verification, identification)
