"""The YouTube Faces (YTF) video verification protocol, with set-level aggregation of frames.

Files (the real release and :func:`pyfacex.data.synthetic.protocols.write_ytf_like` alike):

- ``frame_images_DB/<person>/<video>/<video>.<frame>.jpg``: the frames of each video;
- ``frame_images_DB/<person>.labeled_faces.txt`` (optional): one CSV line per frame,
  ``<person>\\<video>\\<file>,<ignored>,<x centre>,<y centre>,<width>,<height>,...``, the face box;
- ``splits.txt``: a header line naming the comma-separated columns, then one line per video pair.
  Columns are found by their header names ``split number``, ``first name``, ``second name`` and
  ``is same`` (stripped, case-insensitive); a name missing from the header falls back to the column
  the public readers use (0, 2, 3 and 4). Names are ``<person>/<video>``, is same is 1 or 0; the real
  file has 5000 pairs in 10 people-disjoint splits of 500.

Protocol (Face Aggregation Network, Sec. 4.2, after DAN): each video is resampled to N·n_avg frames
(:func:`pyfacex.data.resample_frames`, evenly spaced, frames of short videos repeated), every N
consecutive frames are aggregated by a set function into one feature (or into one image that is then
embedded, :func:`pyfacex.eval.sets.aggregate_then_embed`), the video's feature is the mean of its
n_avg features, L2-normalised. Pairs are compared by the Euclidean distance of these unit features;
cosine similarity ranks pairs identically (‖a − b‖² = 2 − 2·cos), so accuracy, AUC and EER do not
depend on that choice. Accuracy is the 10-fold protocol of :func:`verify_pairs` with the file's
splits as folds (the threshold of each split chosen on the other nine).

The paper's *avg* baseline (mean of all N·n_avg frame features) is
``set_fn = mean_pooling(embed_fn)``: equal chunks make the mean of chunk means the overall mean. Its
*ours* is the Face Aggregation Network's own set function (aggregate the N frames into one image,
embed that image: :func:`pyfacex.eval.sets.model_set_fn`); the robustness test of its Tab. 4 blurs
9 of the N = 10 frames of every set (``degrade=`` :class:`pyfacex.eval.degrade.BlurAllButOne`).
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import RaggedSetDataset, chunk_frames, decode_image, resample_frames
from ..data._args import check_int
from .degrade import DegradedSets
from .sets import SetFn, embed_sets
from .verification import VerificationResult, verify_pairs

__all__ = ["Video", "YTFProtocol", "read_ytf_splits", "read_ytf", "crop_face", "video_chunks", "embed_videos",
           "verify_videos", "evaluate_ytf"]

_COLUMNS = {"split number": 0, "first name": 2, "second name": 3, "is same": 4}
_FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass
class Video:
    """One video: ``name`` ``"<person>/<video>"``, ``frames`` the F frame files in frame order,
    ``boxes`` (F, 4) float32 face boxes (x centre, y centre, width, height) in pixels, or None."""

    name: str
    frames: list[Path]
    boxes: torch.Tensor | None = None


@dataclass
class YTFProtocol:
    """A read YTF protocol: V videos and P pairs.

    Attributes:
        root: the protocol's folder.
        videos: the V videos named in splits.txt, in order of first appearance.
        first, second: (P,) int64 indices into ``videos`` of each pair's two videos.
        issame: (P,) bool. split: (P,) int64, the split number of each pair (the folds).
    """

    root: Path
    videos: list[Video]
    first: torch.Tensor
    second: torch.Tensor
    issame: torch.Tensor
    split: torch.Tensor


def read_ytf_splits(path: str | os.PathLike) -> list[tuple[int, str, str, bool, int]]:
    """Parse a YTF ``splits.txt`` (module docstring).

    Returns:
        one ``(split, first name, second name, is same, line number)`` per pair, in file order;
        names are ``"<person>/<video>"``.
    Raises:
        FileNotFoundError; ValueError naming the file and line of a malformed line.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    numbered = [(number, line) for number, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise ValueError(f"{path}: empty file, expected a header line and one line per pair")
    number, header = numbered[0]
    names = [field.strip().lower() for field in header.split(",")]
    if names[0].lstrip("-").isdigit():
        raise ValueError(f"{path}:{number}: expected a header line naming the columns "
                         f"({', '.join(_COLUMNS)}), got {header.strip()!r}")
    column = {name: names.index(name) if name in names else fallback for name, fallback in _COLUMNS.items()}
    needed = max(column.values()) + 1
    pairs = []
    for number, line in numbered[1:]:
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < needed:
            raise ValueError(f"{path}:{number}: expected at least {needed} comma-separated fields, got {len(fields)}")
        split, same = fields[column["split number"]], fields[column["is same"]]
        if not split.isdigit():
            raise ValueError(f"{path}:{number}: split number must be an int >= 0, got {split!r}")
        if same not in ("0", "1"):
            raise ValueError(f"{path}:{number}: is same must be 1 or 0, got {same!r}")
        videos = []
        for key in ("first name", "second name"):
            name = fields[column[key]].replace("\\", "/")
            if name.count("/") != 1 or "" in name.split("/") or ".." in name.split("/"):
                raise ValueError(f"{path}:{number}: {key} must be <person>/<video>, got {fields[column[key]]!r}")
            videos.append(name)
        pairs.append((int(split), videos[0], videos[1], same == "1", number))
    return pairs


def _frame_key(path: Path) -> tuple:
    # "<video>.<frame>.jpg": order by the frame number, not by the string ("10" after "9")
    number = path.stem.rsplit(".", 1)[-1]
    return (0, int(number), path.name) if number.isdigit() else (1, 0, path.name)


def _read_boxes(path: Path) -> dict[str, list[float]]:
    boxes = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        try:
            box = [float(value) for value in fields[2:6]]
        except ValueError:
            box = []
        if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] <= 0 or box[3] <= 0:
            raise ValueError(f"{path}:{number}: expected <frame path>,<n>,<x>,<y>,<width>,<height>,... with a "
                             f"positive width and height, got {line.strip()!r}")
        boxes[fields[0].replace("\\", "/")] = box
    return boxes


def read_ytf(root: str | os.PathLike, splits: str = "splits.txt", frames_dir: str = "frame_images_DB") -> YTFProtocol:
    """Read a YTF protocol: the pairs of ``root/splits`` and the frames of every video they name.

    Args:
        root: the folder holding ``splits`` and ``frames_dir``.
        splits: the pair list (``splits_corrected.txt`` for the errata version).
        frames_dir: the frame folder; boxes are read from ``<person>.labeled_faces.txt`` beside the
            person folders when that file exists (every frame must then have a line).
    Returns:
        :class:`YTFProtocol`.
    Raises:
        FileNotFoundError for a missing splits file; ValueError naming the splits file and line of a
        video with no folder or no frames, and the box file of a frame without a box.
    """
    root = Path(root)
    splits_path = root / splits
    rows = read_ytf_splits(splits_path)
    frames_root = root / frames_dir
    index: dict[str, int] = {}
    videos: list[Video] = []
    box_files: dict[str, dict[str, list[float]] | None] = {}
    for _, *names, _, number in rows:
        for name in names:
            if name in index:
                continue
            folder = frames_root / name
            if not folder.is_dir():
                raise ValueError(f"{splits_path}:{number}: unknown video {name!r}: no folder {folder}")
            frames = sorted((p for p in folder.iterdir() if p.suffix.lower() in _FRAME_EXTENSIONS), key=_frame_key)
            if not frames:
                raise ValueError(f"{splits_path}:{number}: video {name!r} has no frames in {folder}")
            person = name.split("/")[0]
            if person not in box_files:
                box_path = frames_root / f"{person}.labeled_faces.txt"
                box_files[person] = _read_boxes(box_path) if box_path.is_file() else None
            boxes = None
            if box_files[person] is not None:
                missing = [f for f in frames if f"{name}/{f.name}" not in box_files[person]]
                if missing:
                    raise ValueError(f"{frames_root / f'{person}.labeled_faces.txt'}: no box for frame "
                                     f"{name}/{missing[0].name}")
                boxes = torch.tensor([box_files[person][f"{name}/{f.name}"] for f in frames], dtype=torch.float32)
            index[name] = len(videos)
            videos.append(Video(name, frames, boxes))
    return YTFProtocol(root, videos,
                       first=torch.tensor([index[r[1]] for r in rows], dtype=torch.int64),
                       second=torch.tensor([index[r[2]] for r in rows], dtype=torch.int64),
                       issame=torch.tensor([r[3] for r in rows], dtype=torch.bool),
                       split=torch.tensor([r[0] for r in rows], dtype=torch.int64))


def crop_face(image: torch.Tensor, box: torch.Tensor | None, size: int, scale: float = 1.0) -> torch.Tensor:
    """Square face crop of a frame, resized: a ``transform`` for :func:`embed_videos`.

    Args:
        image: (3, H, W) uint8 frame. box: (4,) x centre, y centre, width, height in pixels, or None
            (then the whole frame is resized).
        size: output side, >= 1. scale: the crop's side is scale · max(width, height).
    Returns:
        (3, size, size) uint8; parts of the square outside the frame are black.
    """
    size = check_int("size", size, 1)
    if box is not None:
        x, y, w, h = (float(v) for v in box)
        side = max(1, round(scale * max(w, h)))
        left, top = round(x - side / 2), round(y - side / 2)
        height, width = image.shape[-2:]
        canvas = image.new_zeros((image.shape[0], side, side))
        x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + side, width), min(top + side, height)
        if x1 > x0 and y1 > y0:
            canvas[:, y0 - top:y1 - top, x0 - left:x1 - left] = image[:, y0:y1, x0:x1]
        image = canvas
    resized = F.interpolate(image[None].float(), size=(size, size), mode="bilinear", antialias=True,
                            align_corners=False)[0]
    return resized.round().clamp(0, 255).to(torch.uint8)


def video_chunks(num_frames: Sequence[int], frames_per_set: int, sets_per_video: int) -> list[torch.Tensor]:
    """The frame sets of the protocol: each video resampled to N·n_avg frames, cut into n_avg runs of N.

    Args:
        num_frames: (V,) frames of each video, each >= 1.
        frames_per_set: N >= 1. sets_per_video: n_avg >= 1.
    Returns:
        V·n_avg tensors (N,) int64 of frame indices; video v's sets are items v·n_avg ... v·n_avg + n_avg − 1.
    """
    n = check_int("frames_per_set", frames_per_set, 1)
    n_avg = check_int("sets_per_video", sets_per_video, 1)
    chunks = []
    for v, count in enumerate(num_frames):
        chunks += chunk_frames(resample_frames(check_int(f"num_frames[{v}]", count, 1), n * n_avg), n)
    return chunks


class _FrameLoader:
    """Loads member (v, f): frame f of video v, decoded, then ``transform(image, box)``. Picklable."""

    def __init__(self, videos: Sequence[Video], transform):
        self.videos, self.transform = videos, transform

    def __call__(self, member: tuple[int, int]) -> torch.Tensor:
        video = self.videos[member[0]]
        path = video.frames[member[1]]
        image = decode_image(path.read_bytes(), source=str(path))
        if self.transform is None:
            return image
        return self.transform(image, None if video.boxes is None else video.boxes[member[1]])


def embed_videos(videos: Sequence[Video], set_fn: SetFn, frames_per_set: int, sets_per_video: int, *,
                 transform: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None,
                 degrade: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                 max_images: int = 256, device: torch.device | str | None = None, num_workers: int = 0,
                 progress: bool = False) -> torch.Tensor:
    """One unit feature per video (module docstring: resample, aggregate N frames, average n_avg, L2).

    Args:
        videos: V :class:`Video` (e.g. ``read_ytf(root).videos``).
        set_fn: set function mapping chunks of N frames (N·b, 3, H, W) uint8 with offsets to (b, d).
        frames_per_set: N. sets_per_video: n_avg.
        transform: ``transform(frame (3, H, W) uint8, box (4,) or None) -> (3, h, w)`` applied to every
            decoded frame, e.g. ``functools.partial(crop_face, size=112)``; frames of one chunk must
            come out the same size.
        degrade: ``degrade(frames (N, 3, h, w) uint8, set index) -> frames`` applied to each set of N
            frames after ``transform``, e.g. :class:`pyfacex.eval.degrade.BlurAllButOne` (the Face
            Aggregation Network's Tab. 4: motion blur on 9 of the N = 10 frames); set index
            v·n_avg + k is the k-th set of video v.
        max_images, device, num_workers, progress: as :func:`pyfacex.eval.sets.embed_sets`.
    Returns:
        (V, d) float32 L2-normalised features; (0, 0) for no videos.
    Raises:
        ValueError naming the video whose mean feature is zero (no direction).
    """
    chunks = video_chunks([len(v.frames) for v in videos], frames_per_set, sets_per_video)
    sets = [[(k // sets_per_video, int(f)) for f in chunk] for k, chunk in enumerate(chunks)]
    loader = _FrameLoader(list(videos), transform)
    dataset = RaggedSetDataset(sets, loader) if degrade is None else DegradedSets(sets, loader, degrade)
    features = embed_sets(set_fn, dataset, max_images=max_images, device=device, num_workers=num_workers,
                          progress=progress, desc="videos")
    if not videos:
        return torch.empty(0, 0)
    mean = features.float().view(len(videos), sets_per_video, -1).mean(1)
    norms = mean.norm(dim=1)
    if bool((norms == 0).any()):
        raise ValueError(f"video {videos[int((norms == 0).nonzero()[0])].name!r}: its mean feature is zero, "
                         "which has no direction")
    return mean / norms[:, None]


def verify_videos(features: torch.Tensor, protocol: YTFProtocol) -> VerificationResult:
    """The protocol's pairs verified on per-video features, one fold per split.

    Args:
        features: (V, d) features of ``protocol.videos`` (normalised or not: verify_pairs normalises).
        protocol: :class:`YTFProtocol`.
    Returns:
        :class:`~pyfacex.eval.verification.protocol.VerificationResult` (accuracy ± std over the
        splits, thresholds from the other splits; AUC, EER, TAR@FAR of all pairs).
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[0] != len(protocol.videos):
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"features: expected ({len(protocol.videos)}, d), one row per video, got {shape}")
    return verify_pairs(features[protocol.first], features[protocol.second], protocol.issame,
                        fold_ids=protocol.split)


def evaluate_ytf(protocol: YTFProtocol | str | os.PathLike, set_fn: SetFn, frames_per_set: int = 10,
                 sets_per_video: int = 4, **embed_options) -> VerificationResult:
    """Read (if given a folder), embed every video, verify the pairs: the whole YTF protocol.

    Args:
        protocol: a :class:`YTFProtocol` or the folder to :func:`read_ytf`.
        set_fn, frames_per_set (N, default 10 as the paper), sets_per_video (n_avg, default 4):
            see :func:`embed_videos`; ``embed_options`` go to it (transform, max_images, device, ...).
    Returns:
        :class:`~pyfacex.eval.verification.protocol.VerificationResult`.
    """
    if not isinstance(protocol, YTFProtocol):
        protocol = read_ytf(protocol)
    features = embed_videos(protocol.videos, set_fn, frames_per_set, sets_per_video, **embed_options)
    return verify_videos(features, protocol)
