"""Batches of the Face Aggregation Network (Face Aggregation Network Sec. 3.2, 4.1): b sets of N faces of one
identity, and for each set a positive P and a negative N for L_dis (eq. 6-7) and the discriminator.

:class:`pyfacex.data.SetSampler` deals the sets; :class:`SetTripletSampler` appends, per batch, the b
positives and the b negatives it draws for them, and :class:`SetTripletCollate` turns such a batch into
``(images, labels, offsets, positives, negatives)``. Everything is a function of (seed, epoch, batch),
so a resumed run sees the same batches (:mod:`pyfacex.train.data`).

With video ids (``RecordDataset.videos``, ``ImageFolderDataset.videos``; Sec. 3.2.1, 4.1):

* a set is N frames of one video of identity y ("N images I_n" of "the entire video"), cut from the
  video as :class:`~pyfacex.data.SetSampler` cuts them: a video of fewer than N frames gives one set
  holding every frame, some twice. The aggregator pools the set with a maximum (eq. 4 and its last
  layer), to which a repeated frame adds nothing, so such a set acts as the set of its frames;
* P is "an image of the same identity from a different video": uniform over y's images from its
  other videos. Identities with a single video have no such image, so their videos never form sets
  (never a P from the set's own video); they still serve as negatives of the other identities.

Without video ids (a reading, warned about once per sampler): P is an image of the set's identity
that is not in the set; identities with at most N images have no such image, so their images never
form sets (they still serve as negatives).

Either way N is drawn uniformly from all images of the other identities.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from ..data import SetSampler
from ..data._args import check_int, label_vector
from ..data.samplers import group_by_video
from .data import AugmentCollate

__all__ = ["SetTripletSampler", "SetTripletCollate"]


class SetTripletSampler(Sampler[list[int]]):
    """Batch sampler yielding b·(N+2) dataset indices: b sets of N images of one identity (consecutive),
    then the b positives (positive s: same identity as set s, from another video, or without video
    ids not in the set), then the b negatives (negative s: another identity than set s's).

    Args:
        labels: (M,) identity of every dataset item (sequence, numpy array or integer tensor).
        sets_per_batch: b >= 1 (``data.sets_per_batch``; 6 in the paper).
        set_size: N >= 1 images per set (``data.set_size``; 10 in the paper).
        seed: int >= 0; with the epoch it decides every batch.
        videos: (M,) video id of every item (unique within an identity at least), or None: then the
            sampler warns once and falls back to P outside the set (see the module docstring).
        rank, world_size: this process's shard of the batches (as :class:`~pyfacex.data.SetSampler`
            with ``drop_last``: every rank gets the same number of full batches).

    The sets come from a :class:`~pyfacex.data.SetSampler` over the identities with two videos or more
    (without video ids: more than N images), distinct identities within a batch where possible,
    incomplete batches dropped; P and N of the global batch g are drawn from a generator seeded by
    (seed, epoch, g).
    """

    def __init__(self, labels: Sequence[int] | torch.Tensor | np.ndarray, sets_per_batch: int, set_size: int,
                 seed: int = 0, *, videos: Sequence[int] | torch.Tensor | np.ndarray | None = None, rank: int = 0,
                 world_size: int = 1):
        array = label_vector(labels)
        self.set_size = check_int("set_size", set_size, 1)
        self.sets_per_batch = check_int("sets_per_batch", sets_per_batch, 1)
        self.seed = check_int("seed", seed, 0)
        ids, codes, counts = np.unique(array, return_inverse=True, return_counts=True)
        if ids.size < 2:
            raise ValueError(f"labels: the Face Aggregation Network needs at least 2 identities (negatives are "
                             f"faces of another identity), got {ids.size}")
        if videos is None:
            warnings.warn("SetTripletSampler: the training set has no video ids, so P is an image of the set's "
                          "identity outside the set, not one from another video (Face Aggregation Network, Sec. "
                          "3.2.1); store them (RecordIO: the second float label; folders: root/<identity>/<video>/"
                          "<frame>) to follow the paper", UserWarning, stacklevel=2)
            self._videos = None
            eligible = counts > self.set_size
            if not eligible.any():
                raise ValueError(f"labels: no identity has more than set_size = {self.set_size} images, so no set "
                                 f"has a positive outside it (the most any identity has is {int(counts.max())})")
            self._by_identity = np.argsort(codes, kind="stable")  # dataset indices grouped by identity
        else:
            self._videos = label_vector(videos, "videos")
            if self._videos.shape != array.shape:
                raise ValueError(f"videos: expected one video id per label ({array.size}), got {self._videos.size}")
            # grouped by identity, then video: a set's video is a sub-block of its identity's block
            self._by_identity, self._group, self._group_counts = group_by_video(codes, self._videos)
            self._group_starts = np.cumsum(self._group_counts) - self._group_counts
            eligible = np.bincount(codes[self._by_identity][self._group_starts], minlength=ids.size) > 1
            if not eligible.any():
                raise ValueError("videos: no identity has images from two videos or more, so no set has a positive "
                                 "from another video (Sec. 3.2.1)")
        self._keep = np.flatnonzero(eligible[codes])  # dataset indices that may form sets
        self._sets = SetSampler(array[self._keep], self.sets_per_batch, self.set_size, self.seed, drop_last=True,
                                videos=None if self._videos is None else self._videos[self._keep], rank=rank,
                                world_size=world_size)
        self._codes = codes
        self._counts = counts
        self._starts = np.cumsum(counts) - counts
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch to draw (the same on every rank)."""
        self._sets.set_epoch(epoch)
        self.epoch = self._sets.epoch

    def __len__(self) -> int:
        return len(self._sets)

    def _references(self, sets: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """(b,) positives and (b,) negatives of ``sets`` (b, N) dataset indices, for global batch ``batch``."""
        rng = np.random.default_rng([self.seed, self.epoch, batch, 0x5E7])
        positives, negatives = [], []
        for members in sets:
            identity = self._codes[members[0]]
            start, count = self._starts[identity], self._counts[identity]
            if self._videos is None:
                # setdiff1d sorts, so the candidates' order (and the draw) does not depend on the set's order
                candidates = np.setdiff1d(self._by_identity[start:start + count], members)
                positives.append(candidates[rng.integers(candidates.size)])
            else:  # uniform over the identity's other videos: skip the set's video's block
                group = self._group[members[0]]
                skip, width = self._group_starts[group], self._group_counts[group]
                u = start + int(rng.integers(count - width))
                positives.append(self._by_identity[u if u < skip else u + width])
            # uniform over the M - count images of the other identities: skip this identity's block
            u = int(rng.integers(self._codes.size - count))
            negatives.append(self._by_identity[u if u < start else u + count])
        return np.asarray(positives, dtype=np.int64), np.asarray(negatives, dtype=np.int64)

    def __iter__(self) -> Iterator[list[int]]:
        rank, world_size = self._sets.rank, self._sets.world_size
        for k, local in enumerate(self._sets):
            sets = self._keep[np.asarray(local, dtype=np.int64)].reshape(-1, self.set_size)
            positives, negatives = self._references(sets, rank + k * world_size)  # SetSampler's global batch
            yield np.concatenate([sets.reshape(-1), positives, negatives]).tolist()


class SetTripletCollate:
    """Collates a :class:`SetTripletSampler` batch of (image, label, seed) items into
    ``images`` (b·N, 3, S, S) uint8, ``labels`` (b,) int64 (each set's identity), ``offsets`` (b+1,)
    int64 = [0, N, ..., b·N], ``positives`` (b, 3, S, S) and ``negatives`` (b, 3, S, S) uint8.

    Every image is resized to ``image_size`` by :class:`~pyfacex.train.data.AugmentCollate`; only the
    sets' frames are augmented (``augment``, seeded by the batch): P is the discriminator's real face
    (eq. 12), and blurring it would teach the discriminator that blurred faces are real, against the
    aggregator's purpose; P and N also serve as clean references of L_dis.
    """

    def __init__(self, image_size: int, set_size: int, augment: Callable | None = None):
        self.set_size = check_int("set_size", set_size, 1)
        self.frames = AugmentCollate(image_size, augment, set_size)
        self.references = AugmentCollate(image_size, None)

    def __call__(self, items):
        b, rest = divmod(len(items), self.set_size + 2)
        if rest or b == 0:
            raise ValueError(f"batch: expected b·(set_size + 2) items (b sets of {self.set_size}, b positives, "
                             f"b negatives) with b >= 1, got {len(items)}")
        images, labels, offsets = self.frames(items[:b * self.set_size])
        references, _ = self.references(items[b * self.set_size:])
        positives, negatives = references.split(b)
        return images, labels[::self.set_size].contiguous(), offsets, positives, negatives
