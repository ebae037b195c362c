"""One entry point for every protocol :mod:`pyfacex.eval` runs on files on disk: :func:`evaluate_protocol`.

A protocol is named by a *spec*: ``"[name=][kind:]path[@option...]"``. Without ``kind`` the layout of
``path`` decides (first match wins):

==========  =====================================================================================
kind        layout of ``path``
==========  =====================================================================================
bin         an insightface verification ``.bin`` file (lfw.bin, cfp_fp.bin, agedb_30.bin, ...)
lfw         a folder holding ``pairs.txt`` with the images under ``lfw/`` (or, with ``lfw:``, the
            pair list file itself, images under ``lfw/`` beside it)
cfp-fp      a folder holding ``Protocol/Pair_list_F.txt`` (frontal-profile split; detected as
cfp-ff      ``cfp-ff`` instead when the name contains "ff", else write ``cfp-ff:path``)
tinyface    a folder holding ``Testing_Set/``
ijbc, ijbb  a folder holding ``IJBC/meta`` (``IJBB/meta``), or the ``IJBC`` folder itself
            (``meta/ijbc_*`` files)
ijba        a folder holding ``IJB-A_11_sets/split1/verify_metadata_1.csv`` (images under
            ``images/``), or the ``IJB-A_11_sets`` folder itself
ytf         a folder holding ``splits.txt`` and ``frame_images_DB/``
==========  =====================================================================================

Faces are aligned as insightface aligns test faces (the similarity onto the ArcFace template,
:func:`pyfacex.data.landmarks.align_face`) wherever the protocol's files give landmarks:

- ``ijbb``, ``ijbc``: every loose crop by its five points of ``*_name_5pts_score.txt``, as
  insightface's and AdaFace's IJB evaluations do (:func:`~pyfacex.eval.ijb.evaluate_ijb`);
- ``lfw``, ``cfp-fp``, ``cfp-ff``, ``tinyface``: when the protocol folder holds a landmark sidecar
  :data:`LANDMARKS_FILE` (``landmarks.csv``: ``path,x1,y1,...,x5,y5`` per image, paths relative to
  it, :func:`pyfacex.data.landmarks.read_landmarks_csv`), every image by its five points; without
  one the images are taken as aligned crops (LFW's and CFP's aligned copies, AdaFace's TinyFace).

``align=False`` (``pyfacex eval --no-align``) or the option ``@noalign`` turns this off for crops
that are already aligned faces: they are only resized. ``bin`` files hold aligned faces, ``ijba`` and
``ytf`` crop each image's face box (IJB-A ships no five points; :mod:`pyfacex.eval.ijb.ijba` says why
its three annotated ones are not used by default); none of them aligns.

Options after the path, each ``@option`` (they end the protocol's name too: ``lfw@16px``):

==========  =====================================================================================
option      effect (applied to the uint8 images at evaluation time)
==========  =====================================================================================
``@Npx``    every image down-sampled to N×N and up-sampled back, bilinear (QAFace, Sec. 3.1,
            Tab. 1: ``@8px``, ``@16px``); any kind
``@blurL``  motion blur of filter size L on 9 of the N = 10 frames of every YTF set, the sharp
            frame and the angles drawn per set from ``seed`` (Face Aggregation Network, Sec.
            4.4, Tab. 4: L = 7 ... 17); ``ytf`` only
``@noalign`` no alignment by the protocol's landmarks (see above): the stored crops as they are
==========  =====================================================================================

Template and set protocols (``ijba``, ``ijbb``, ``ijbc``, ``ytf``) pool each template or set of
frames with a *set function* (:func:`pyfacex.eval.sets.select_set_fn`): ``set_function="model"``
runs the model's own (``set_model.set_representation``: LFENet's LIT across the template, then the
mean of the embeddings, LFENet Sec. IV-B; the Face Aggregation Network's aggregate-then-embed, its
"ours", Sec. 4.2), ``"mean"`` the image embedder's per-image embeddings averaged (IJB-A's "Baseline
(Avg.)", YTF's *avg*; on IJB-B/C insightface's media pooling with detector scores), ``"auto"`` (the
default) the model's own when it has one. The single-image kinds embed each image alone whatever it is.

The model follows :func:`pyfacex.eval.embed`'s convention: float32 (B, 3, H, W) in [-1, 1]
(insightface's ``(x / 255 - 0.5) / 0.5``) -> (B, d) embeddings; with ``flip`` the embedding of the
mirrored image is added. Every image is embedded once; the pair scores of verification protocols are
the cosine similarities of the same embeddings the protocol measured.
"""
from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data._args import check_int
from .degrade import BlurAllButOne, down_up_transform
from .ijb import evaluate_ijb, evaluate_ijba
from .ijb.ijba import SETS_FOLDER
from .ranking import IdentificationResult
from .report import tar_column
from .sets import mean_pooling, select_set_fn
from .tinyface import evaluate_tinyface
from .verification import embed, read_cfp_pairs, read_lfw_pairs, verify_pairs
from .verification.embedding import embed_bin, embed_pair_list
from .video import crop_face, embed_videos, read_ytf

__all__ = ["KINDS", "SET_KINDS", "LANDMARKS_FILE", "ProtocolResult", "SpecOptions", "detect_kind", "parse_spec",
           "resolve_spec", "evaluate_protocol"]

KINDS = ("bin", "lfw", "cfp-fp", "cfp-ff", "tinyface", "ijba", "ijbb", "ijbc", "ytf")
"""The protocol kinds :func:`evaluate_protocol` runs (the ``kind:`` prefixes of a spec)."""

SET_KINDS = ("ijba", "ijbb", "ijbc", "ytf")
"""Kinds that pool templates or sets of frames with a set function (``set_function``)."""

VERIFICATION_KINDS = ("bin", "lfw", "cfp-fp", "cfp-ff", "ytf")
"""Kinds whose headline is the k-fold verification accuracy."""

LANDMARKS_FILE = "landmarks.csv"
"""The landmark sidecar a ``lfw``, ``cfp-*`` or ``tinyface`` protocol folder may hold (module docstring)."""

_LAYOUTS = ("a .bin file (insightface verification pairs)",
            "a folder with pairs.txt and lfw/ (LFW)",
            "a folder with Protocol/Pair_list_F.txt (CFP; cfp-ff:PATH for the frontal-frontal split)",
            "a folder with Testing_Set/ (TinyFace)",
            "a folder with IJBC/meta or IJBB/meta, or an IJBC/IJBB folder with meta/ijbc_* or meta/ijbb_* (IJB)",
            f"a folder with {SETS_FOLDER}/split1/verify_metadata_1.csv or split1/verify_metadata_1.csv (IJB-A)",
            "a folder with splits.txt and frame_images_DB/ (YouTube Faces)")

_DEFAULT_SIDE = 112   # TinyFace, IJB-A and YTF store no model-sized faces: they are resized to this by default
_YTF_FRAMES_PER_SET, _YTF_SETS_PER_VIDEO = 10, 4   # N and n_avg of evaluate_ytf (the paper's values)
_OPTION = re.compile(r"(?P<px>[0-9]+)px|blur(?P<blur>[0-9]+)|(?P<noalign>noalign)")


@dataclass(frozen=True, eq=False)
class ProtocolResult:
    """What :func:`evaluate_protocol` measured on one protocol.

    Attributes:
        name: the protocol's name (the spec's ``name=``, else the file stem / folder name).
        kind: one of :data:`KINDS`.
        metrics: metric name -> value (floats; NaN where the protocol leaves a figure undefined).
            Verification kinds: ``accuracy``, ``accuracy_std``, ``val``, ``val_std``, ``far``,
            ``auc``, ``eer`` and ``tar_column(far, "interpolated")`` per FAR of
            :data:`pyfacex.eval.TAR_FARS`. TinyFace: ``rank-k`` per rank (1, 3, 5, 10, 20), ``mAP``.
            IJB-B/C: ``tar_column(far, convention)`` per 1:1 FAR and convention ("nearest",
            "interpolated"), and (1:N, mean of the two galleries) ``rank-k``, ``mAP``,
            ``TPIR@FPIR=f``. IJB-A: ``tar_column(far, convention)`` (mean over the splits) and the
            same key + ``" std"`` per FAR of :data:`~pyfacex.eval.ijb.IJBA_FARS` and convention.
        primary: the key of the headline metric: ``accuracy`` (verification kinds), ``rank-1``
            (TinyFace), ``TAR@FAR=1e-4 (nearest)`` (IJB-B/C), ``TAR@FAR=1e-3 (interp.)`` (IJB-A).
        scores: (M,) float64 similarity of each verification pair (cosine of the normalised
            embeddings; IJB: of the template features; IJB-A: every split's pairs, in split order),
            or None (TinyFace).
        is_genuine: (M,) bool, whether pair m shows one identity, or None.
        details: the protocol result's own JSON-ready ``as_dict()``; set kinds add
            ``"set_function"``: ``"model"`` or ``"mean"``, the one that ran; every kind but ``bin``
            and ``ytf`` adds ``"aligned"``: whether faces were aligned by the protocol's landmarks
            (always False for ``ijba``).
        path: the protocol's file or folder.
        features: the features scored, arrays by name (what ``pyfacex eval --out`` dumps):
            verification kinds ``embeddings`` (2P, d), L2-normalised, rows 2p and 2p + 1 the two
            sides of pair p (a ``.bin``: its images in file order, as insightface's verification
            embeds them); IJB-B/C ``template_feats`` (T, d) (normalised) and ``template_ids`` (T,)
            int64 ascending; TinyFace ``probe_feats``, ``gallery_feats`` (flip-summed, not normalised)
            with ``probe_labels`` and ``gallery_labels``; IJB-A ``template_feats`` (T, d) (not normalised)
            with ``template_ids`` and ``template_splits`` (T,), split after split.
    """

    name: str
    kind: str
    metrics: dict[str, float]
    primary: str
    scores: np.ndarray | None = field(default=None, repr=False)
    is_genuine: np.ndarray | None = field(default=None, repr=False)
    details: dict = field(default_factory=dict, repr=False)
    path: Path | None = None
    features: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def value(self) -> float:
        """The headline metric, ``metrics[primary]``."""
        return self.metrics[self.primary]


# ----------------------------------------------------------------------------------------------------
# specs and layouts


@dataclass(frozen=True)
class SpecOptions:
    """The ``@`` options of a protocol spec (module docstring table).

    Attributes:
        resolution: N of ``@Npx`` (down-sample every image to N×N and back), or None.
        blur: L of ``@blurL`` (motion blur of filter size L on 9 of every 10 YTF frames), or None.
        align: False with ``@noalign`` (no alignment by the protocol's landmarks).
    """

    resolution: int | None = None
    blur: int | None = None
    align: bool = True

    @property
    def suffix(self) -> str:
        """The options as written after a path and a protocol's name: ``""``, ``"@16px"``, ``"@blur9"``,
        ``"@noalign"``, ..."""
        return ("" if self.resolution is None else f"@{self.resolution}px") + \
            ("" if self.blur is None else f"@blur{self.blur}") + ("" if self.align else "@noalign")


def _split_options(text: str, spec: str) -> tuple[str, SpecOptions]:
    """``text`` without its trailing ``@option``s, and the options (a ``@`` that is no option stays)."""
    found: dict[str, int] = {}
    while True:
        head, sep, tail = text.rpartition("@")
        match = _OPTION.fullmatch(tail.lower()) if sep else None
        if match is None:
            break
        key = next(name for name in ("px", "blur", "noalign") if match[name] is not None)
        value = 1 if key == "noalign" else int(match[key])
        if key in found:
            raise ValueError(f"spec: the option @{tail} is given twice in {spec!r}")
        if value < 1:
            raise ValueError(f"spec: expected @Npx / @blurL with N, L >= 1, got @{tail} in {spec!r}")
        found[key], text = value, head
    return text, SpecOptions(found.get("px"), found.get("blur"), "noalign" not in found)


def parse_spec(spec: str | os.PathLike) -> tuple[str | None, str | None, Path, SpecOptions]:
    """Split a protocol spec ``"[name=][kind:]path[@option...]"`` into
    ``(name or None, kind or None, path, options)``.

    ``name`` is the text before the first ``=`` when that text holds no path separator; ``kind`` is
    recognised only when it is one of :data:`KINDS` (so ``C:\\data`` stays a path); options are the
    trailing ``@Npx`` / ``@blurL`` / ``@noalign`` of the path (:class:`SpecOptions`; any other ``@...``
    is part of the path).

    Raises:
        ValueError naming ``spec`` when the name or the path is empty, or an option is repeated or 0.
    """
    text = os.fspath(spec)
    if not isinstance(text, str):
        raise TypeError(f"spec: expected a string 'name=path' or a path, got {type(spec).__name__}")
    name = None
    head, sep, rest = text.partition("=")
    if sep and "/" not in head and os.sep not in head:
        if not head:
            raise ValueError(f"spec: expected 'name=path' with a non-empty name, got {text!r}")
        name, text = head, rest
    kind = None
    prefix, sep, rest = text.partition(":")
    if sep and prefix.lower() in KINDS:
        kind, text = prefix.lower(), rest
    text, options = _split_options(text, os.fspath(spec))
    if not text:
        raise ValueError(f"spec: expected a path after the name and kind, got {os.fspath(spec)!r}")
    return name, kind, Path(text).expanduser(), options


def _ijb_target(path: Path) -> str | None:
    """"ijbc" / "ijbb" when ``path`` has an IJB layout, None when it has none."""
    found = []
    for target in ("IJBC", "IJBB"):
        prefix = target.lower()
        if (path / target / "meta").is_dir() or any((path / "meta").glob(f"{prefix}_*")):
            found.append(prefix)
    if len(found) > 1:
        raise ValueError(f"path: {path} holds both IJB-B and IJB-C; write ijbb:{path} or ijbc:{path}")
    return found[0] if found else None


def detect_kind(path: str | os.PathLike, name: str | None = None) -> str:
    """The kind of protocol at ``path`` (module docstring table), one of :data:`KINDS`.

    Args:
        path: the protocol's file or folder. name: the protocol's name; a CFP folder is ``cfp-ff``
            when it contains "ff" (case-insensitive), else ``cfp-fp``.
    Raises:
        FileNotFoundError naming a path that does not exist; ValueError naming the path and
        listing the accepted layouts when none matches.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path: {path} does not exist (expected a protocol file or folder)")
    if path.is_file() and path.suffix.lower() == ".bin":
        return "bin"
    if path.is_dir():
        if (path / "pairs.txt").is_file():
            return "lfw"
        if (path / "Protocol" / "Pair_list_F.txt").is_file():
            return "cfp-ff" if "ff" in (name or path.name).lower() else "cfp-fp"
        if (path / "Testing_Set").is_dir():
            return "tinyface"
        target = _ijb_target(path)
        if target is not None:
            return target
        if (path / SETS_FOLDER / "split1" / "verify_metadata_1.csv").is_file() \
                or (path / "split1" / "verify_metadata_1.csv").is_file():
            return "ijba"
        if (path / "splits.txt").is_file() and (path / "frame_images_DB").is_dir():
            return "ytf"
    raise ValueError(f"path: {path} is no protocol layout pyfacex knows; expected one of: " + "; ".join(_LAYOUTS)
                     + f" (or name the kind: KIND:PATH with KIND one of {', '.join(KINDS)})")


def _default_name(kind: str, path: Path) -> str:
    if kind in ("cfp-fp", "cfp-ff"):
        return kind
    if kind == "lfw" and path.is_file():
        return path.parent.name or "lfw"
    return path.stem if path.is_file() else path.resolve().name


def resolve_spec(spec: str | os.PathLike) -> tuple[str, str, Path, SpecOptions]:
    """``(name, kind, path, options)`` of a protocol spec: :func:`parse_spec`, then :func:`detect_kind`
    when the spec names no kind, and the default name (file stem, folder name; ``cfp-fp`` / ``cfp-ff``
    for CFP) when it names none. The name ends with the options' suffix (``lfw@16px``; added unless
    the given name already ends with it).

    Raises:
        FileNotFoundError naming ``spec`` and a path that does not exist; ValueError as
        :func:`parse_spec` and :func:`detect_kind`, and naming ``spec`` for ``@blurL`` on a kind
        other than ``ytf``.
    """
    name, kind, path, options = parse_spec(spec)
    if not path.exists():
        raise FileNotFoundError(f"spec: {path} does not exist (expected a protocol file or folder)")
    kind = kind or detect_kind(path, name)
    if options.blur is not None and kind != "ytf":
        raise ValueError(f"spec: @blur{options.blur} blurs the frames of YTF sets; {os.fspath(spec)!r} is {kind}")
    name = name or _default_name(kind, path)
    return (name if name.endswith(options.suffix) else name + options.suffix), kind, path, options


# ----------------------------------------------------------------------------------------------------
# the protocols


def _verification_result(name: str, kind: str, path: Path, emb_a: torch.Tensor, emb_b: torch.Tensor,
                         issame: torch.Tensor, **verify_kwargs) -> ProtocolResult:
    """:func:`verify_pairs` on (P, d) embeddings of both sides, as a :class:`ProtocolResult`."""
    result = verify_pairs(emb_a, emb_b, issame, **verify_kwargs)
    a, b = (x.detach().to("cpu", torch.float64).numpy() for x in (emb_a, emb_b))
    # verify_pairs normalised the same way (and refused zero norms): these are the scores of its ROC
    a = a / np.sqrt(np.einsum("ij,ij->i", a, a))[:, None]
    b = b / np.sqrt(np.einsum("ij,ij->i", b, b))[:, None]
    details = result.as_dict()
    metrics = {key: float(details[key]) for key in ("accuracy", "accuracy_std", "val", "val_std", "far", "auc", "eer")}
    metrics.update({tar_column(far, result.tar_convention): float(tar) for far, tar in result.tar_at_far.items()})
    labels = issame.detach().cpu().numpy().astype(bool).reshape(-1)
    embeddings = np.stack([a, b], axis=1).reshape(-1, a.shape[1]).astype(np.float32)
    return ProtocolResult(name, kind, metrics, "accuracy", np.einsum("ij,ij->i", a, b), labels, details, path,
                          {"embeddings": embeddings})


def _identification_metrics(result) -> dict[str, float]:
    """rank-k, mAP and TPIR@FPIR of an IdentificationResult or OpenSetResult (no recomputation)."""
    metrics = {f"rank-{k}": float(v) for k, v in result.rank.items()}
    metrics["mAP"] = float(result.mean_average_precision)
    metrics.update({f"TPIR@FPIR={f:g}": float(v) for f, v in result.tpir.items()})
    return metrics


def _sidecar(folder: Path, align: bool) -> Path | None:
    """The landmark sidecar :data:`LANDMARKS_FILE` of a protocol folder when aligning and it exists, else None."""
    candidate = folder / LANDMARKS_FILE
    return candidate if align and candidate.is_file() else None


def _size(image_size: int | None, default: int | None) -> int | None:
    if image_size is None:
        return default
    return check_int("image_size", image_size, 1)


def evaluate_protocol(spec: str | os.PathLike, model: torch.nn.Module, *, batch_size: int = 64, flip: bool = True,
                      device: str | torch.device | None = None, image_size: int | None = None,
                      progress: bool = False, folds: int = 10, set_model: torch.nn.Module | None = None,
                      set_function: str | None = None, seed: int = 0, align: bool = True,
                      num_workers: int = 0) -> ProtocolResult:
    """Run the protocol ``spec`` names on ``model`` (module docstring: specs, kinds, options, layouts).

    Args:
        spec: ``"[name=][kind:]path[@option...]"``: e.g. ``"/data/lfw"``, ``"lfw=/data/lfw"``,
            ``"cfp-ff:/data/cfp"``, ``"agedb=/data/agedb_30.bin"``, ``"lfw:/data/lfw@16px"``,
            ``"ytf@blur9=/data/ytf@blur9"``, ``"ijba:/data/IJB-A"``.
        model: the image embedder: float32 (B, 3, H, W) in [-1, 1] -> (B, d) embeddings
            (:func:`pyfacex.eval.embed`'s convention); run in eval mode without gradients, its mode
            restored afterwards.
        batch_size: images per forward pass (set protocols: the bound on the images of one set
            function call; a larger template or set goes alone).
        flip: add the embedding of the horizontally mirrored image (IJB-B/C media pooling:
            insightface's flip fusion of :func:`~pyfacex.eval.ijb.evaluate_ijb`; a model's set
            function: the representation of the mirrored set).
        device: where the model runs (default: the device of its parameters, CPU without any).
        image_size: the side H = W the model expects; every image is resized to it. None: the
            images' own size (``.bin``, LFW, CFP, IJB-B/C crops; all images of a batch must then
            share one), 112 for TinyFace, IJB-A and YTF (face crops of the images' boxes).
        progress: tqdm bars.
        folds: k of the k-fold protocol on a ``.bin`` (which stores no folds); pair lists and YTF
            use their own folds.
        set_model: the whole model whose ``set_representation(images, offsets) -> (b, E)`` is its
            set function (e.g. LFENet, the Face Aggregation Network; ``model`` is then its image
            embedder), or None.
        set_function: ``"model"``, ``"mean"`` or ``"auto"`` / None (module docstring); used by
            :data:`SET_KINDS`, checked for every kind.
        seed: seed of the evaluation-time degradations that draw at random (``@blurL``), >= 0.
        align: align faces by the landmarks the protocol's files give (module docstring: IJB-B/C's
            five points, a :data:`LANDMARKS_FILE` sidecar); False, or the spec's ``@noalign``, takes
            the stored crops as aligned faces.
        num_workers: DataLoader worker processes that decode and align the images of image-file
            protocols (0: this process; a ``.bin`` is decoded when read).
    Protocol settings: pair lists and YTF test on their own folds; TinyFace reports ranks 1, 3, 5, 10,
    20; IJB-B/C run 1:1 (FARs 1e-6 ... 1e-1) and 1:N, with the ``mean`` set function each image
    weighted by its detector score and pooled per media; IJB-A runs its splits' 1:1 (FARs 1e-3, 1e-2,
    1e-1, mean ± std over the splits); YTF uses :func:`~pyfacex.eval.evaluate_ytf`'s N = 10 frames per
    set and 4 sets per video and crops each frame's face box (:func:`~pyfacex.eval.video.crop_face`),
    with the ``mean`` set function the mean of the frames' (flip-summed) embeddings
    (:func:`~pyfacex.eval.mean_pooling`, the Face Aggregation Network's *avg* baseline).

    Returns:
        :class:`ProtocolResult`.
    Raises:
        FileNotFoundError naming a missing path or protocol file; ValueError naming ``spec`` or
        the path when the spec is malformed or the layout is unknown (listing the accepted ones),
        naming ``set_function`` when it is unknown or ``"model"`` without a set model, and the
        readers' errors naming the file and line of a malformed protocol file.
    """
    name, kind, path, spec_options = resolve_spec(spec)
    align = bool(align) and spec_options.align
    batch_size = check_int("batch_size", batch_size, 1)
    seed = check_int("seed", seed, 0)
    num_workers = check_int("num_workers", num_workers, 0)
    transform = None if spec_options.resolution is None else down_up_transform(spec_options.resolution)
    options = dict(batch_size=batch_size, flip=flip, device=device, progress=progress, transform=transform)
    # per-batch embedding inside the protocols' own loops (and progress bars)
    embed_fn: Callable[[torch.Tensor], torch.Tensor] = functools.partial(
        embed, model, batch_size=batch_size, flip=flip, device=device, transform=transform)
    chosen, set_fn = select_set_fn(set_function, set_model, lambda: mean_pooling(embed_fn), flip=flip, device=device,
                                   transform=transform)

    if kind == "bin":
        if not path.is_file():
            raise ValueError(f"spec: bin: expects an insightface .bin file, got the folder {path}")
        side = _size(image_size, None)
        emb_a, emb_b, issame = embed_bin(model, path, image_size=None if side is None else (side, side), **options)
        return _verification_result(name, kind, path, emb_a, emb_b, issame, folds=folds)

    if kind in ("lfw", "cfp-fp", "cfp-ff"):
        if kind == "lfw":
            pairs = read_lfw_pairs(path if path.is_file() else path / "pairs.txt")
        else:
            pairs = read_cfp_pairs(path, "FP" if kind == "cfp-fp" else "FF")
        side = _size(image_size, None)
        landmarks = _sidecar(path.parent if path.is_file() else path, align)
        emb_a, emb_b = embed_pair_list(model, pairs, image_size=None if side is None else (side, side),
                                       landmarks=landmarks, num_workers=num_workers, **options)
        result = _verification_result(name, kind, path, emb_a, emb_b, pairs.issame, fold_ids=pairs.fold_ids)
        result.details["aligned"] = landmarks is not None
        return result

    side = _size(image_size, _DEFAULT_SIDE if kind in ("tinyface", "ijba", "ytf") else None)

    if kind == "tinyface":
        landmarks = _sidecar(path, align)
        features: dict[str, np.ndarray] = {}
        ranking: IdentificationResult = evaluate_tinyface(path, embed_fn, batch_size=batch_size, image_size=side,
                                                          progress=progress, landmarks=landmarks,
                                                          num_workers=num_workers, features=features)
        return ProtocolResult(name, kind, _identification_metrics(ranking), "rank-1", None, None,
                              {**ranking.as_dict(), "aligned": landmarks is not None}, path, features)

    if kind in ("ijbb", "ijbc"):
        size = None if side is None else (side, side)
        if chosen == "model":
            result = evaluate_ijb(path, None, set_fn=set_fn, target=kind.upper(), image_size=size, align=align,
                                  max_images=batch_size, num_workers=num_workers, progress=progress)
        else:   # insightface's pipeline: it adds the flipped crops' features itself
            no_flip = functools.partial(embed_fn, flip=False)
            result = evaluate_ijb(path, no_flip, target=kind.upper(), flip=flip, batch_size=batch_size,
                                  image_size=size, align=align, num_workers=num_workers, progress=progress)
        verification = result.verification
        fars = verification.fars.tolist()
        metrics = {tar_column(far, convention): float(tar)
                   for convention, tars in verification.tar.items() for far, tar in zip(fars, tars.tolist())}
        if result.identification is not None:
            metrics.update(_identification_metrics(result.identification))
        primary = tar_column(1e-4, "nearest")
        if primary not in metrics:
            primary = next(iter(metrics))
        return ProtocolResult(name, kind, metrics, primary,
                              verification.scores.detach().to("cpu", torch.float64).numpy(),
                              verification.labels.detach().cpu().numpy().astype(bool),
                              {**result.as_dict(), "set_function": chosen, "aligned": align}, path,
                              {"template_feats": result.template_feats.detach().to("cpu", torch.float32).numpy(),
                               "template_ids": result.template_ids.detach().cpu().numpy()})

    if kind == "ijba":
        result = evaluate_ijba(path, set_fn, image_size=side, max_images=batch_size,  # box crops
                               num_workers=num_workers, progress=progress)
        metrics = {}
        for convention in result.mean:
            for far, mean, std in zip(result.fars.tolist(), result.mean[convention].tolist(),
                                      result.std[convention].tolist()):
                metrics[tar_column(far, convention)] = float(mean)
                metrics[tar_column(far, convention) + " std"] = float(std)
        scores = torch.cat([r.scores for r in result.per_split]).to(torch.float64).numpy()
        labels = torch.cat([r.labels for r in result.per_split]).numpy().astype(bool)
        return ProtocolResult(name, kind, metrics, tar_column(1e-3, "interpolated"), scores, labels,
                              {**result.as_dict(), "set_function": chosen, "aligned": result.aligned > 0}, path,
                              {"template_feats": result.template_feats.detach().to("cpu", torch.float32).numpy(),
                               "template_ids": result.template_ids.numpy(),
                               "template_splits": result.template_splits.numpy()})

    if kind == "ytf":
        protocol = read_ytf(path)
        # each video's feature: the set function on every N consecutive frames, averaged over the n_avg
        # sets (with "mean": the mean of its frames' embeddings, the paper's "avg");
        # verify_videos = verify_pairs on the videos' rows with the splits as folds
        degrade = None if spec_options.blur is None else BlurAllButOne(spec_options.blur, seed)
        features = embed_videos(protocol.videos, set_fn, frames_per_set=_YTF_FRAMES_PER_SET,
                                sets_per_video=_YTF_SETS_PER_VIDEO, transform=functools.partial(crop_face, size=side),
                                degrade=degrade, max_images=max(batch_size, _YTF_FRAMES_PER_SET),
                                num_workers=num_workers, progress=progress)
        result = _verification_result(name, kind, path, features[protocol.first], features[protocol.second],
                                      protocol.issame, fold_ids=protocol.split)
        result.details["set_function"] = chosen
        return result

    raise ValueError(f"spec: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
