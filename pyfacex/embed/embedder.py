""":class:`FaceEmbedder`: a pyfacex model file as a face embedder for one's own images."""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data._args import check_int
from ..eval.verification.embedding import embed as flip_sum_features
from ..train.checkpoint import UnreadableFileError, embedder_for, load_model
from .calibration import CALIBRATION_KEY, how_to_calibrate
from .faces import prepare_faces
from .files import embed_files
from .inputs import ImageList
from .output import FileEmbeddings
from .search import DEFAULT_CHUNK, as_rows, normalised_rows, top_k

__all__ = ["FaceEmbedder", "resolve_device"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; anything else as ``torch.device`` takes it."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {device!r} ({error})") from None


class FaceEmbedder:
    """Embed faces with a pyfacex model file, compare them, and search a gallery.

    >>> import tempfile, torch
    >>> from pyfacex.backbones import iresnet18
    >>> from pyfacex.train.checkpoint import save_model
    >>> tiny = {"layers": [1, 1, 1, 1], "widths": [8, 8, 16, 16], "num_features": 16}
    >>> path = save_model(f"{tempfile.mkdtemp()}/model.pt", iresnet18(**tiny), name="iresnet18", kwargs=tiny)
    >>> embedder = FaceEmbedder(path)                # a training run's model.pt, or pyfacex convert's output
    >>> faces = torch.randint(0, 256, (3, 3, 112, 112), dtype=torch.uint8)   # aligned crops (or photos + landmarks)
    >>> a = embedder.embed(faces)                    # (B, d) L2-normalised
    >>> a.shape, round(float(a.norm(dim=1).mean()), 4)
    (torch.Size([3, 16]), 1.0)
    >>> float(embedder.similarity(a[0], a[0])) > 0.9999   # cosine
    True
    >>> scores, rows = embedder.search(a, a, k=2)    # the 2 most similar gallery rows per query
    >>> rows[:, 0].tolist()
    [0, 1, 2]

    Embeddings are computed as ``pyfacex eval`` computes them (:func:`pyfacex.eval.embed`): the
    model's embedder (:func:`pyfacex.train.checkpoint.embedder_for`) on ``(x/255 − 0.5)/0.5``, plus
    the embedding of the mirrored face when ``flip``, then L2-normalised. So the threshold
    ``pyfacex eval --calibrate FAR`` stores in the model file holds for these cosines.

    Args:
        model_file: a pyfacex model file (training's ``model.pt``, ``pyfacex convert``'s output).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        flip: add the mirrored face's embedding; None: as the stored calibration was measured, else True.
        batch_size: faces per forward pass.

    Attributes:
        image_size: the side S of the faces the model takes; info: the model file's fields (name,
        kwargs, image_size, calibration, ...); calibration: the stored calibration record or None;
        model: the embedding module.
    Raises:
        FileNotFoundError for a missing file; ValueError for a file that is no pyfacex model file or
        holds a model without embeddings (FAN).
    """

    def __init__(self, model_file: str | os.PathLike, *, device: str | torch.device = "cpu", flip: bool | None = None,
                 batch_size: int = 64):
        path = Path(model_file)
        if not path.is_file():
            raise FileNotFoundError(f"model_file: {path} does not exist (expected a pyfacex model file)")
        self.device = resolve_device(device)
        try:
            whole, info = load_model(path, device=self.device)
        except UnreadableFileError as error:
            raise ValueError(f"model_file: {path} is not a pyfacex model file: it cannot be read "
                             f"{error.detail}") from error
        order = info.get("channel_order", "RGB")
        if order != "RGB":   # pyfacex convert turns BGR networks to RGB; any other file is not ours to guess
            raise ValueError(f"model_file: {path} reads {order} images; pyfacex feeds RGB (convert the weights with "
                             f"pyfacex convert, which reverses a BGR stem)")
        self.model = embedder_for(whole).eval()
        self.path, self.info = path, info
        self.image_size = int(info["image_size"])
        self.calibration: dict | None = info.get(CALIBRATION_KEY)
        stored_flip = None if self.calibration is None else self.calibration.get("flip")
        self.flip = bool(flip) if flip is not None else (True if stored_flip is None else bool(stored_flip))
        self.batch_size = check_int("batch_size", batch_size, 1)
        self._embedding_size: int | None = None

    def __repr__(self) -> str:
        return (f"FaceEmbedder({str(self.path)!r}, image_size={self.image_size}, flip={self.flip}, "
                f"threshold={self.threshold}, device={str(self.device)!r})")

    @property
    def name(self) -> str:
        """The model file's name."""
        return self.path.name

    @property
    def threshold(self) -> float | None:
        """The stored cosine threshold (same person when cosine >= it), or None when the file has none."""
        return None if self.calibration is None else float(self.calibration["threshold"])

    @property
    def embedding_size(self) -> int:
        """d, the size of the embeddings (found by embedding one blank face the first time it is asked)."""
        if self._embedding_size is None:
            blank = torch.zeros(1, 3, self.image_size, self.image_size, dtype=torch.uint8)
            self._embedding_size = int(self.features(blank).shape[1])
        return self._embedding_size

    def features(self, faces) -> torch.Tensor:
        """Raw (not normalised) flip-summed features of model-ready faces.

        Args:
            faces: uint8 (N, 3, S, S), or an iterable of uint8 (B, 3, S, S) batches.
        Returns:
            float32 (N, d) on the CPU ((0, 0) with no faces).
        """
        return flip_sum_features(self.model, faces, batch_size=self.batch_size, flip=self.flip, device=self.device)

    def embed(self, images, landmarks=None, *, return_norms: bool = False):
        """L2-normalised embeddings of faces.

        Args:
            images: uint8 or floating in [0, 1] RGB: a batch (B, 3, H, W), one image (3, H, W), or a
                sequence of B (3, H_i, W_i) photos of different sizes; any device.
            landmarks: None: the images are aligned face crops (insightface's 112×112 framing),
                resized to :attr:`image_size` when of another size. Else (B, 5, 2) or (B, 68, 2) pixel
                x, y ((5, 2) / (68, 2) for one image) in insightface's / iBUG's order: each face is
                aligned by :func:`pyfacex.align.norm_crop`.
            return_norms: also return the raw features' norms.
        Returns:
            float32 (B, d) on the CPU (d for one image); with ``return_norms`` also (B,) (or ()) norms.
        Raises:
            TypeError / ValueError naming ``images`` or ``landmarks``.
        """
        single = isinstance(images, torch.Tensor) and images.dim() == 3
        faces = prepare_faces(images, landmarks, self.image_size)
        raw = self.features(faces) if faces.shape[0] else torch.zeros(0, self.embedding_size)
        embeddings, norms = F.normalize(raw, dim=1), raw.norm(dim=1)
        if single:
            embeddings, norms = embeddings[0], norms[0]
        return (embeddings, norms) if return_norms else embeddings

    def embed_files(self, images: ImageList, *, workers: int = 0, exif: bool = True, skip_bad: bool = False,
                    progress: bool = False) -> FileEmbeddings:
        """Embed image files (:func:`pyfacex.embed.embed_files`: DataLoader workers, EXIF orientation,
        bad files named or skipped)."""
        return embed_files(self, images, batch_size=self.batch_size, workers=workers, exif=exif, skip_bad=skip_bad,
                           progress=progress)

    @staticmethod
    def similarity(a, b) -> torch.Tensor:
        """Cosine similarity of embeddings (normalised here, so raw features work too).

        Args:
            a: (N, d) or (d,); b: (M, d) or (d,) (tensors or arrays).
        Returns:
            (N, M); a (d,) side drops its dimension ((M,), (N,), or () for two vectors). float32
            (float64 when both are), on ``a``'s device.
        Raises:
            TypeError / ValueError naming ``a`` or ``b``.
        """
        rows_a, rows_b = as_rows(a, "a"), as_rows(b, "b")
        if rows_a.shape[1] != rows_b.shape[1]:
            raise ValueError(f"b: expected embeddings of a's size {rows_a.shape[1]}, got {rows_b.shape[1]}")
        dtype = torch.float64 if rows_a.dtype == rows_b.dtype == torch.float64 else torch.float32
        device = rows_a.device
        scores = normalised_rows(rows_a, "a", 0, device, dtype) @ normalised_rows(rows_b, "b", 0, device, dtype).T
        if torch.as_tensor(b).dim() == 1:
            scores = scores[:, 0]
        if torch.as_tensor(a).dim() == 1:
            scores = scores[0]
        return scores

    @staticmethod
    def search(queries, gallery, k: int = 5, *, chunk_size: int = DEFAULT_CHUNK,
               device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The k most similar gallery rows per query, exactly, in chunks (:func:`pyfacex.embed.top_k`).

        Args:
            queries: (Q, d) or (d,) embeddings; gallery: (M, d).
            k: per query (all M when the gallery is smaller).
            chunk_size: queries per block and gallery rows per chunk.
            device: where the products run (default: the queries').
        Returns:
            (scores, indices): (Q, min(k, M)) cosines, descending, and int64 gallery rows (ties: lower row first).
        """
        return top_k(queries, gallery, k, chunk_size=chunk_size, device=device)

    def decide(self, scores) -> torch.Tensor:
        """Same person: ``scores >= threshold`` (bool, the shape of ``scores``).

        Raises:
            ValueError saying how to store a threshold when the model file has none.
        """
        if self.threshold is None:
            raise ValueError(f"threshold: {self.path} stores none; {how_to_calibrate(self.path)}")
        return torch.as_tensor(scores) >= self.threshold
