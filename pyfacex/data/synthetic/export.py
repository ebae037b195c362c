"""Synthetic training sets on disk: an image folder, insightface RecordIO, and the ground truth.

``write_training_set`` renders identity by identity (so memory stays flat however large the set),
as still images or, with ``frames_per_video``, as videos (:meth:`.world.SyntheticFaceWorld.video`:
the training data of the Face Aggregation Network, whose sets are frames of one video), and writes
any of:

- ``images/<identity>/<sample>.jpg``, or for videos ``images/<identity>/<video>/<frame>.jpg``: one
  folder per identity (:class:`~pyfacex.data.ImageFolderDataset`, which reads the video ids of the
  second layout);
- ``train.rec``, ``train.idx``, ``property``: insightface's layout (:class:`~pyfacex.data.RecordDataset`,
  insightface's ``MXFaceDataset``), class c = the c-th identity; for videos the second float label
  is the video id c·V + v of the v-th of the V videos per identity (as the folder numbers them);
- ``ground_truth.npz``: per image, in class-then-sample order, ``identity`` (world ids), ``sample``
  (the frame index in a video), for videos ``video`` (the world's video index v of the identity,
  what :meth:`~.world.SyntheticFaceWorld.video` takes) and ``video_id`` (the stored id c·V + v),
  ``landmarks`` (N, 68, 2) pixel x, y, ``visible`` (N, 68), ``pose`` (N, 3) yaw/pitch/roll degrees
  and one array per nuisance factor, ``nuisance_<name>`` (N,), for landmark training and for analysis;
  with ``unrecognisable`` > 0 also ``unrecognisable`` (N,) int64, the codes of
  :func:`.unrecognisable.choose_unrecognisable` (0: an ordinary image).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .._args import check_int
from ..codec import encode_jpeg
from ..record_writer import RecordDatasetWriter
from .unrecognisable import UNRECOGNISABLE_KINDS, choose_unrecognisable, make_unrecognisable
from .world import FaceBatch, SyntheticFaceWorld, _check_fraction

__all__ = ["FORMATS", "write_training_set"]

FORMATS = ("folder", "record")


def write_training_set(world: SyntheticFaceWorld, out_dir: str | os.PathLike, num_identities: int,
                       per_identity: int, *, frames_per_video: int | None = None, split: str = "train",
                       unrecognisable: float = 0.0, formats=FORMATS, quality: int = 95, overwrite: bool = False,
                       progress: bool = True) -> Path:
    """Render ``num_identities`` × ``per_identity`` images of a split and write them.

    Args:
        world: the synthetic world (its seed, size and nuisance knobs decide every image).
        out_dir: the folder to write (created if missing).
        num_identities: identities, the first ones of ``split``; per_identity: images each.
        frames_per_video: None for still images; else every identity's ``per_identity`` images are
            per_identity / frames_per_video videos (videos 0, 1, ... of the world) of that many frames
            each (it must divide ``per_identity``), and the video ids are stored (see the module docstring).
        split: "train" or "test" (disjoint identities).
        unrecognisable: the fraction in [0, 1] of still images rendered unrecognisable (extreme blur,
            heavy occlusion or very low resolution, :mod:`.unrecognisable`; QAFace, Sec. 3.5): exactly
            round(fraction · N) images chosen by the world seed; 0 (the default) changes nothing.
        formats: any of "folder", "record".
        quality: JPEG quality of the stored images.
        overwrite: replace an existing set in ``out_dir``.
        progress: show a progress bar (images/s) on stderr.
    Returns:
        ``out_dir`` as a Path. ``info.json`` there records the world and the arguments (with
        ``unrecognisable`` > 0 also the count of each kind).
    """
    check_int("num_identities", num_identities, 1)
    check_int("per_identity", per_identity, 1)
    if frames_per_video is not None:
        check_int("frames_per_video", frames_per_video, 1)
        if per_identity % frames_per_video:
            raise ValueError(f"frames_per_video: expected a divisor of per_identity = {per_identity} (whole videos "
                             f"per identity), got {frames_per_video}")
    unrecognisable = _check_fraction("unrecognisable", unrecognisable, 1)
    if unrecognisable and frames_per_video is not None:
        raise ValueError(f"unrecognisable: unrecognisable images are still images; expected 0 with frames_per_video = "
                         f"{frames_per_video}, got {unrecognisable}")
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise ValueError(f"formats: expected some of {FORMATS}, got {formats!r}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality: expected 1..100, got {quality}")
    out = Path(out_dir)
    if (out / "info.json").exists() and not overwrite:
        raise FileExistsError(f"out_dir: {out} already holds a synthetic set (pass overwrite=True to replace it)")
    out.mkdir(parents=True, exist_ok=True)

    identities = world.identities(split, num_identities)
    total = num_identities * per_identity
    record = RecordDatasetWriter(out, total, num_identities, (world.size, world.size), overwrite=True) \
        if "record" in formats else None
    truth: dict[str, list] = {}
    batches = _stills(world, identities, per_identity, unrecognisable) if frames_per_video is None else \
        _videos(world, identities, per_identity // frames_per_video, frames_per_video)
    try:
        with tqdm(total=total, desc="synthetic faces", unit="img", disable=not progress) as bar:
            for labels, columns, batch in batches:   # columns: the ground truth's video / unrecognisable
                for i in range(len(batch)):
                    payload = encode_jpeg(batch.images[i], quality)
                    if "folder" in formats:
                        folder = out / "images" / f"{int(batch.identity[i]):07d}"
                        if "video" in columns:
                            folder = folder / f"{int(columns['video'][i]):04d}"
                        path = folder / f"{int(batch.sample[i]):04d}.jpg"
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_bytes(payload)
                    if record is not None:
                        record.add(payload, int(labels[i]),
                                   video=int(columns["video_id"][i]) if "video_id" in columns else None)
                _collect(truth, batch, columns)
                bar.update(len(batch))
    except BaseException:
        if record is not None:
            record.abort()
        raise
    if record is not None:
        record.close()
    truth = {k: torch.cat(v) for k, v in truth.items()}
    np.savez_compressed(out / "ground_truth.npz", **{k: v.numpy() for k, v in truth.items()})
    info = {"seed": world.seed, "size": world.size, "nuisance": vars(world.nuisance), "framing": vars(world.framing),
            "cohort_size": world.cohort_size, "cohort_jitter": world.cohort_jitter,
            "local_variety": world.local_variety, "split": split,
            "num_identities": num_identities, "per_identity": per_identity, "frames_per_video": frames_per_video,
            "formats": list(formats), "quality": quality, "identities": [int(identities[0]), int(identities[-1])]}
    if unrecognisable:
        codes = truth["unrecognisable"]
        info["unrecognisable"] = {"fraction": unrecognisable, "count": int((codes > 0).sum()),
                                  **{kind: int((codes == k).sum()) for k, kind in enumerate(UNRECOGNISABLE_KINDS, 1)}}
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return out


def _stills(world: SyntheticFaceWorld, identities: torch.Tensor, per_identity: int, unrecognisable: float = 0.0
            ) -> Iterator[tuple[torch.Tensor, dict, FaceBatch]]:
    """(class labels, {} or {"unrecognisable": codes}, batch) of whole identities' stills, about
    ``world.chunk`` images per batch; with ``unrecognisable`` > 0 the chosen images degraded."""
    codes = None
    if unrecognisable:
        codes = choose_unrecognisable(world.seed, identities.repeat_interleave(per_identity),
                                      torch.arange(per_identity).repeat(len(identities)), unrecognisable)
    group = max(1, world.chunk // per_identity)
    for start in range(0, len(identities), group):
        classes = torch.arange(start, min(start + group, len(identities)))
        batch = world.render(identities[classes].repeat_interleave(per_identity),
                             torch.arange(per_identity).repeat(len(classes)))
        if codes is None:
            yield classes.repeat_interleave(per_identity), {}, batch
            continue
        chosen = codes[start * per_identity:(start + len(classes)) * per_identity]
        yield classes.repeat_interleave(per_identity), {"unrecognisable": chosen}, \
            make_unrecognisable(world, batch, chosen)


def _videos(world: SyntheticFaceWorld, identities: torch.Tensor, videos: int, frames: int
            ) -> Iterator[tuple[torch.Tensor, dict, FaceBatch]]:
    """(class labels, {"video": v, "video_id": c·V + v} per frame, batch) of one video per batch,
    identity by identity (class c, V = ``videos``)."""
    for label, identity in enumerate(identities.tolist()):
        for video in range(videos):
            ids = {"video": video, "video_id": label * videos + video}
            yield (torch.full((frames,), label, dtype=torch.int64),
                   {k: torch.full((frames,), v, dtype=torch.int64) for k, v in ids.items()},
                   world.video(identity, video, frames))


def _collect(truth: dict, batch: FaceBatch, extra: dict) -> None:
    columns = {"identity": batch.identity, "sample": batch.sample, **extra, "landmarks": batch.landmarks,
               "visible": batch.visible, "pose": batch.pose,
               **{f"nuisance_{k}": v for k, v in batch.nuisance.items()}}
    for name, value in columns.items():
        truth.setdefault(name, []).append(value.clone())
