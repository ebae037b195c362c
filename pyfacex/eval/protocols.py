"""One entry point for every protocol :mod:`pyfacex.eval` runs on files on disk: :func:`evaluate_protocol`.

A protocol is named by a *spec*: ``"[name=][kind:]path"``. Without ``kind`` the layout of ``path``
decides (first match wins):

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
ytf         a folder holding ``splits.txt`` and ``frame_images_DB/``
==========  =====================================================================================

The model follows :func:`pyfacex.eval.embed`'s convention: float32 (B, 3, H, W) in [-1, 1]
(insightface's ``(x / 255 - 0.5) / 0.5``) -> (B, d) embeddings; with ``flip`` the embedding of the
mirrored image is added. Every image is embedded once; the pair scores of verification protocols are
the cosine similarities of the same embeddings the protocol measured.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data._args import check_int
from .ijb import evaluate_ijb
from .ranking import IdentificationResult
from .report import tar_column
from .sets import mean_pooling
from .tinyface import evaluate_tinyface
from .verification import embed, read_cfp_pairs, read_lfw_pairs, verify_pairs
from .verification.embedding import embed_bin, embed_pair_list
from .video import crop_face, embed_videos, read_ytf

__all__ = ["KINDS", "ProtocolResult", "detect_kind", "parse_spec", "resolve_spec", "evaluate_protocol"]

KINDS = ("bin", "lfw", "cfp-fp", "cfp-ff", "tinyface", "ijbb", "ijbc", "ytf")
"""The protocol kinds :func:`evaluate_protocol` runs (the ``kind:`` prefixes of a spec)."""

VERIFICATION_KINDS = ("bin", "lfw", "cfp-fp", "cfp-ff", "ytf")
"""Kinds whose headline is the k-fold verification accuracy."""

_LAYOUTS = ("a .bin file (insightface verification pairs)",
            "a folder with pairs.txt and lfw/ (LFW)",
            "a folder with Protocol/Pair_list_F.txt (CFP; cfp-ff:PATH for the frontal-frontal split)",
            "a folder with Testing_Set/ (TinyFace)",
            "a folder with IJBC/meta or IJBB/meta, or an IJBC/IJBB folder with meta/ijbc_* or meta/ijbb_* (IJB)",
            "a folder with splits.txt and frame_images_DB/ (YouTube Faces)")

_DEFAULT_SIDE = 112   # TinyFace and YTF store no model-sized faces: they are resized to this by default
_YTF_FRAMES_PER_SET, _YTF_SETS_PER_VIDEO = 10, 4   # N and n_avg of evaluate_ytf (the paper's values)


@dataclass(frozen=True, eq=False)
class ProtocolResult:
    """What :func:`evaluate_protocol` measured on one protocol.

    Attributes:
        name: the protocol's name (the spec's ``name=``, else the file stem / folder name).
        kind: one of :data:`KINDS`.
        metrics: metric name -> value (floats; NaN where the protocol leaves a figure undefined).
            Verification kinds: ``accuracy``, ``accuracy_std``, ``val``, ``val_std``, ``far``,
            ``auc``, ``eer`` and ``tar_column(far, "interpolated")`` per FAR of
            :data:`pyfacex.eval.TAR_FARS`. TinyFace: ``rank-k`` per rank, ``mAP``. IJB:
            ``tar_column(far, convention)`` per 1:1 FAR and convention ("nearest", "interpolated"),
            and (1:N, mean of the two galleries) ``rank-k``, ``mAP``, ``TPIR@FPIR=f``.
        primary: the key of the headline metric: ``accuracy`` (verification kinds), ``rank-1``
            (TinyFace), ``TAR@FAR=1e-4 (nearest)`` (IJB).
        scores: (M,) float64 similarity of each verification pair (cosine of the normalised
            embeddings; IJB: of the template features), or None (TinyFace).
        is_genuine: (M,) bool, whether pair m shows one identity, or None.
        details: the protocol result's own JSON-ready ``as_dict()``.
        path: the protocol's file or folder.
    """

    name: str
    kind: str
    metrics: dict[str, float]
    primary: str
    scores: np.ndarray | None = field(default=None, repr=False)
    is_genuine: np.ndarray | None = field(default=None, repr=False)
    details: dict = field(default_factory=dict, repr=False)
    path: Path | None = None

    @property
    def value(self) -> float:
        """The headline metric, ``metrics[primary]``."""
        return self.metrics[self.primary]


# ----------------------------------------------------------------------------------------------------
# specs and layouts


def parse_spec(spec: str | os.PathLike) -> tuple[str | None, str | None, Path]:
    """Split a protocol spec ``"[name=][kind:]path"`` into ``(name or None, kind or None, path)``.

    ``name`` is the text before the first ``=`` when that text holds no path separator; ``kind`` is
    recognised only when it is one of :data:`KINDS` (so ``C:\\data`` stays a path).

    Raises:
        ValueError naming ``spec`` when the name or the path is empty.
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
    if not text:
        raise ValueError(f"spec: expected a path after the name and kind, got {os.fspath(spec)!r}")
    return name, kind, Path(text).expanduser()


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


def resolve_spec(spec: str | os.PathLike) -> tuple[str, str, Path]:
    """``(name, kind, path)`` of a protocol spec: :func:`parse_spec`, then :func:`detect_kind` when
    the spec names no kind, and the default name (file stem, folder name; ``cfp-fp`` / ``cfp-ff``
    for CFP) when it names none.

    Raises:
        FileNotFoundError naming ``spec`` and a path that does not exist; ValueError as
        :func:`parse_spec` and :func:`detect_kind`.
    """
    name, kind, path = parse_spec(spec)
    if not path.exists():
        raise FileNotFoundError(f"spec: {path} does not exist (expected a protocol file or folder)")
    kind = kind or detect_kind(path, name)
    return name or _default_name(kind, path), kind, path


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
    return ProtocolResult(name, kind, metrics, "accuracy", np.einsum("ij,ij->i", a, b), labels, details, path)


def _identification_metrics(result) -> dict[str, float]:
    """rank-k, mAP and TPIR@FPIR of an IdentificationResult or OpenSetResult (no recomputation)."""
    metrics = {f"rank-{k}": float(v) for k, v in result.rank.items()}
    metrics["mAP"] = float(result.mean_average_precision)
    metrics.update({f"TPIR@FPIR={f:g}": float(v) for f, v in result.tpir.items()})
    return metrics


def _size(image_size: int | None, default: int | None) -> int | None:
    if image_size is None:
        return default
    return check_int("image_size", image_size, 1)


def evaluate_protocol(spec: str | os.PathLike, model: torch.nn.Module, *, batch_size: int = 64, flip: bool = True,
                      device: str | torch.device | None = None, image_size: int | None = None,
                      progress: bool = False, folds: int = 10) -> ProtocolResult:
    """Run the protocol ``spec`` names on ``model`` (module docstring: specs, kinds, layouts).

    Args:
        spec: ``"[name=][kind:]path"``: e.g. ``"/data/lfw"``, ``"lfw=/data/lfw"``,
            ``"cfp-ff:/data/cfp"``, ``"agedb=/data/agedb_30.bin"``.
        model: float32 (B, 3, H, W) in [-1, 1] -> (B, d) embeddings (:func:`pyfacex.eval.embed`'s
            convention); run in eval mode without gradients, its mode restored afterwards.
        batch_size: images per forward pass.
        flip: add the embedding of the horizontally mirrored image (IJB: insightface's flip
            fusion of :func:`~pyfacex.eval.ijb.evaluate_ijb`).
        device: where the model runs (default: the device of its parameters, CPU without any).
        image_size: the side H = W the model expects; every image is resized to it. None: the
            images' own size (``.bin``, LFW, CFP, IJB crops; all images of a batch must then
            share one), 112 for TinyFace and YTF (face crops of the frames' boxes).
        progress: tqdm bars.
        folds: k of the k-fold protocol on a ``.bin`` (which stores no folds); pair lists and YTF
            use their own folds.
    Protocol settings: pair lists and YTF test on their own folds; TinyFace reports ranks 1, 5, 10,
    20; IJB runs 1:1 (FARs 1e-6 ... 1e-1) and 1:N with each image weighted by its detector score;
    YTF uses :func:`~pyfacex.eval.evaluate_ytf`'s N = 10 frames per set and 4 sets per video, crops
    each frame's face box (:func:`~pyfacex.eval.video.crop_face`) and pools a set by the mean of its
    frames' (flip-summed) embeddings (:func:`~pyfacex.eval.mean_pooling`, the paper's *avg* baseline).

    Returns:
        :class:`ProtocolResult`.
    Raises:
        FileNotFoundError naming a missing path or protocol file; ValueError naming ``spec`` or
        the path when the spec is malformed or the layout is unknown (listing the accepted ones),
        and the readers' errors naming the file and line of a malformed protocol file.
    """
    name, kind, path = resolve_spec(spec)
    batch_size = check_int("batch_size", batch_size, 1)
    options = dict(batch_size=batch_size, flip=flip, device=device, progress=progress)

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
        emb_a, emb_b = embed_pair_list(model, pairs, image_size=None if side is None else (side, side), **options)
        return _verification_result(name, kind, path, emb_a, emb_b, pairs.issame, fold_ids=pairs.fold_ids)

    side = _size(image_size, _DEFAULT_SIDE if kind in ("tinyface", "ytf") else None)
    embed_fn: Callable[[torch.Tensor], torch.Tensor] = functools.partial(
        embed, model, batch_size=batch_size, flip=flip, device=device)

    if kind == "tinyface":
        ranking: IdentificationResult = evaluate_tinyface(path, embed_fn, batch_size=batch_size, image_size=side,
                                                          progress=progress)
        return ProtocolResult(name, kind, _identification_metrics(ranking), "rank-1", None, None, ranking.as_dict(),
                              path)

    if kind in ("ijbb", "ijbc"):
        target = kind.upper()
        no_flip = functools.partial(embed, model, batch_size=batch_size, flip=False, device=device)
        result = evaluate_ijb(path, no_flip, target=target, flip=flip, batch_size=batch_size,
                              image_size=None if side is None else (side, side), progress=progress)
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
                              verification.labels.detach().cpu().numpy().astype(bool), result.as_dict(), path)

    if kind == "ytf":
        protocol = read_ytf(path)
        # the paper's "avg" baseline: each video's feature is the mean of its frames' (flip-summed)
        # embeddings; verify_videos = verify_pairs on the videos' rows with the splits as folds
        features = embed_videos(protocol.videos, mean_pooling(embed_fn), frames_per_set=_YTF_FRAMES_PER_SET,
                                sets_per_video=_YTF_SETS_PER_VIDEO, transform=functools.partial(crop_face, size=side),
                                max_images=max(batch_size, _YTF_FRAMES_PER_SET), progress=progress)
        return _verification_result(name, kind, path, features[protocol.first], features[protocol.second],
                                    protocol.issame, fold_ids=protocol.split)

    raise ValueError(f"spec: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
