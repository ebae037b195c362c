"""Embeddings of face images with insightface's test-time flip, and verification from files.

insightface's ``test``: each image and its mirror go through the model separately (eval mode, no
gradients, input ``(x / 255 - 0.5) / 0.5``) and the two outputs are summed; the sum is L2-normalised
later, by the protocol (:func:`~.protocol.verify_pairs`). insightface keeps the outputs in float64
before summing; here they are summed in float32 (the difference is a rounding of the last bit).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from tqdm import tqdm

from ...data._args import check_int
from ...data.landmarks import LandmarkTable, landmark_table
from ...data.transforms import hflip, normalize
from ...data.verification_bin import read_verification_bin
from ..face_files import face_batches
from .pair_lists import PairList
from .protocol import VerificationResult, verify_pairs

__all__ = ["embed", "embed_bin", "embed_pair_list", "evaluate_bin", "evaluate_pair_list"]


def _batches(images, batch_size: int) -> tuple[Iterable[torch.Tensor], int | None]:
    """The batches of ``images`` and, when known, the number of images."""
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ValueError(f"images: expected uint8 (N, 3, H, W), got shape {tuple(images.shape)}")
        return images.split(batch_size), images.shape[0]
    return images, None


def _model_device(model: torch.nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def embed(model: torch.nn.Module, images: torch.Tensor | Iterable[torch.Tensor], batch_size: int = 64,
          flip: bool = True, device: str | torch.device | None = None, progress: bool = False,
          transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Embed face images: ``model(normalize(x)) + model(normalize(hflip(x)))`` (flip) or the first term.

    Args:
        model: maps float32 (B, 3, H, W) in [-1, 1] to (B, d). Run in eval mode under
            ``torch.no_grad``; its training mode is restored afterwards.
        images: RGB uint8 (N, 3, H, W), or an iterable of uint8 (B, 3, H, W) batches (e.g. decoded
            lazily from files).
        batch_size: images per forward pass when ``images`` is one tensor.
        flip: add the embedding of the mirrored image (insightface's "Accuracy-Flip").
        device: where the model runs (default: the device of its parameters, CPU without any).
        progress: show a tqdm bar.
        transform: applied to every uint8 batch (B, 3, H, W) on ``device`` before it is normalised
            (and mirrored), e.g. an evaluation-time degradation; must return uint8 (B, 3, H', W').
    Returns:
        float32 (N, d) on the CPU, not normalised. With no images: (0, 0).
    """
    batch_size = check_int("batch_size", batch_size, 1)
    device = torch.device(device) if device is not None else _model_device(model)
    batches, total = _batches(images, batch_size)
    outputs, seen = [], 0
    training = model.training
    model.eval()
    try:
        with torch.no_grad(), tqdm(total=total, desc="embed", unit="img", disable=not progress) as bar:
            for batch in batches:
                if not isinstance(batch, torch.Tensor) or batch.dtype != torch.uint8 or batch.dim() != 4 \
                        or batch.shape[1] != 3:
                    raise ValueError(f"images: expected uint8 batches (B, 3, H, W); the batch at image {seen} "
                                     f"is {getattr(batch, 'dtype', type(batch).__name__)} "
                                     f"{tuple(getattr(batch, 'shape', ()))}")
                if batch.shape[0] == 0:          # models need not accept empty batches
                    continue
                x = batch.to(device)
                if transform is not None:
                    x = transform(x)
                out = model(normalize(x))
                if flip:
                    out = out + model(normalize(hflip(x)))
                if out.dim() != 2 or out.shape[0] != batch.shape[0]:
                    raise ValueError(f"model: expected ({batch.shape[0]}, d) embeddings for the batch at image "
                                     f"{seen}, got shape {tuple(out.shape)}")
                outputs.append(out.float().cpu())
                seen += batch.shape[0]
                bar.update(batch.shape[0])
    finally:
        model.train(training)
    return torch.cat(outputs) if outputs else torch.empty((0, 0), dtype=torch.float32)


def embed_bin(model: torch.nn.Module, path: str | os.PathLike, *, batch_size: int = 64, flip: bool = True,
              device: str | torch.device | None = None, image_size: tuple[int, int] | None = None,
              progress: bool = False, transform: Callable[[torch.Tensor], torch.Tensor] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The embeddings of both sides of an insightface ``.bin``'s pairs: (P, d), (P, d) and issame (P,).

    Images ``2p`` and ``2p + 1`` are pair ``p``. Args as :func:`embed` (``transform`` included);
    ``image_size`` (H, W) resizes images of another size (see :func:`~pyfacex.data.read_verification_bin`).
    """
    images, issame = read_verification_bin(path, image_size=image_size)
    features = embed(model, images, batch_size=batch_size, flip=flip, device=device, progress=progress,
                     transform=transform)
    if features.shape[0] == 0:
        raise ValueError(f"path: {path} holds no pairs")
    return features[0::2], features[1::2], issame


def evaluate_bin(model: torch.nn.Module, path: str | os.PathLike, *, batch_size: int = 64, flip: bool = True,
                 device: str | torch.device | None = None, image_size: tuple[int, int] | None = None,
                 progress: bool = False, **verify_kwargs) -> VerificationResult:
    """Verification on an insightface ``.bin`` (lfw.bin, cfp_fp.bin, agedb_30.bin, calfw.bin, ...).

    Args as :func:`embed_bin`; ``verify_kwargs`` go to :func:`~.protocol.verify_pairs` (``folds``,
    ``far_target``, ``thresholds``, ...).
    """
    emb_a, emb_b, issame = embed_bin(model, path, batch_size=batch_size, flip=flip, device=device,
                                     image_size=image_size, progress=progress)
    return verify_pairs(emb_a, emb_b, issame, **verify_kwargs)


def embed_pair_list(model: torch.nn.Module, pair_list: PairList, *, batch_size: int = 64, flip: bool = True,
                    device: str | torch.device | None = None, image_size: tuple[int, int] | None = None,
                    progress: bool = False, transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    landmarks: LandmarkTable | str | os.PathLike | None = None, num_workers: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The embeddings (P, d), (P, d) of both sides of a :class:`~.pair_lists.PairList`'s pairs.

    Each distinct image is decoded and embedded once (in batches, never all in memory as pixels), by
    ``num_workers`` DataLoader worker processes (0: in this one; :func:`pyfacex.eval.face_files.face_batches`).
    Args as :func:`embed_bin` (``transform`` included). Without ``landmarks`` the images must
    already be aligned face crops (``image_size`` only resizes). With ``landmarks`` (a sidecar CSV
    ``path,x1,y1,...,x5,y5``, :func:`pyfacex.data.landmarks.read_landmarks_csv`, or its table),
    every image is aligned by its five points as insightface aligns test faces
    (:func:`pyfacex.data.landmarks.align_face`), to a square of side ``image_size[0]`` (112 when
    ``image_size`` is None; then H must equal W).

    Raises:
        ValueError for no pairs, or a non-square ``image_size`` with ``landmarks``; KeyError naming
        an image the sidecar has no row for.
    """
    index: dict[Path, int] = {}
    for path in (*pair_list.paths_a, *pair_list.paths_b):
        index.setdefault(Path(path), len(index))
    if not index:
        raise ValueError("pair_list: no pairs")
    size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
    points = None
    if landmarks is not None:
        if size is not None and size[0] != size[1]:
            raise ValueError(f"image_size: aligned crops are square; expected (S, S), got {size}")
        points = landmark_table(landmarks).points_of(list(index))
    batches = face_batches([str(path) for path in index], batch_size, size, points, num_workers)
    features = embed(model, batches, flip=flip, device=device, progress=progress, transform=transform)
    rows_a = torch.tensor([index[Path(p)] for p in pair_list.paths_a], dtype=torch.int64)
    rows_b = torch.tensor([index[Path(p)] for p in pair_list.paths_b], dtype=torch.int64)
    return features[rows_a], features[rows_b]


def evaluate_pair_list(model: torch.nn.Module, pair_list: PairList, *, batch_size: int = 64, flip: bool = True,
                       device: str | torch.device | None = None, image_size: tuple[int, int] | None = None,
                       progress: bool = False, landmarks: LandmarkTable | str | os.PathLike | None = None,
                       **verify_kwargs) -> VerificationResult:
    """Verification on a :class:`~.pair_lists.PairList` (from :func:`~.pair_lists.read_lfw_pairs` or
    :func:`~.pair_lists.read_cfp_pairs`), on the benchmark's own folds.

    Args as :func:`embed_pair_list` (``landmarks``: a sidecar to align the images by); ``verify_kwargs``
    go to :func:`~.protocol.verify_pairs`; ``fold_ids`` defaults to the pair list's folds.
    """
    emb_a, emb_b = embed_pair_list(model, pair_list, batch_size=batch_size, flip=flip, device=device,
                                   image_size=image_size, progress=progress, landmarks=landmarks)
    verify_kwargs.setdefault("fold_ids", pair_list.fold_ids)
    return verify_pairs(emb_a, emb_b, pair_list.issame, **verify_kwargs)
