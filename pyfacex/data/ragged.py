"""Templates and videos as ragged sets: a dataset whose items are whole sets, the collate that packs
them with ``offsets`` (the set ops' convention, pyfacex/ops/sets.py), and a batch sampler that bounds
the number of images per batch.

A batch of b sets is packed along dim 0 as ``members`` (N, ...) with ``offsets`` (b+1,) int64:
offsets[0] = 0, offsets[-1] = N, set i = members[offsets[i]:offsets[i+1]]. Such a batch goes straight
into :func:`pyfacex.ops.set_max`, :func:`pyfacex.ops.global_concat` or :func:`pyfacex.ops.lit_attention`.

Empty sets are rejected (ValueError naming the set id) when the dataset or sampler is built: a set's
max or mean is undefined without members, so a template that lost all its images must be dropped or
handled by the caller explicitly rather than surface as an error deep inside a kernel.

Helpers for protocols: :func:`sets_from_labels` groups image indices by identity / template id,
:func:`resample_frames` picks N evenly spaced frames of a video (repeating frames of short videos),
:func:`chunk_frames` cuts frames into consecutive chunks.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ._args import check_int, label_vector

__all__ = [
    "RaggedSetDataset",
    "RaggedBatchSampler",
    "collate_ragged",
    "sets_from_labels",
    "resample_frames",
    "chunk_frames",
]


class RaggedSetDataset(Dataset):
    """Items are whole sets (templates, videos, chunks of a video), loaded member by member.

    Args:
        sets: a sequence of b member lists, e.g. image indices or paths per template / per video.
            Every set must have at least one member.
        load: ``load(member) -> Tensor``; every member of a set must load to the same shape. With a
            DataLoader using worker processes it must be picklable (a module-level function, a bound
            method of a picklable object such as ``table.__getitem__``, a ``functools.partial``).

    Item i is ``(members, i)``: members (n_i, ...) the stacked loaded members in the set's order,
    i the set id (its position in ``sets``). Batch them with :func:`collate_ragged`.
    """

    def __init__(self, sets: Sequence[Sequence[Any]], load: Callable[[Any], torch.Tensor]):
        if not callable(load):
            raise TypeError(f"load: expected a callable member -> Tensor, got {type(load).__name__}")
        self.sets = [list(members) for members in sets]
        for i, members in enumerate(self.sets):
            if not members:
                raise ValueError(f"sets[{i}] is empty: every set needs at least one member")
        self.load = load

    @property
    def sizes(self) -> list[int]:
        """Number of members of each set (for :class:`RaggedBatchSampler`)."""
        return [len(members) for members in self.sets]

    def __len__(self) -> int:
        return len(self.sets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self.sets) <= index < len(self.sets):
            raise IndexError(f"set index {index} out of range for {len(self.sets)} sets")
        index %= len(self.sets)
        loaded = [self.load(member) for member in self.sets[index]]
        for member, value in zip(self.sets[index], loaded):
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"set {index}: load({member!r}) returned {type(value).__name__}, expected a Tensor")
            if value.shape != loaded[0].shape:
                raise ValueError(f"set {index}: member {member!r} loaded with shape {tuple(value.shape)}, "
                                 f"the set's first member with {tuple(loaded[0].shape)}")
        return torch.stack(loaded), index


def collate_ragged(batch: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pack a batch of :class:`RaggedSetDataset` items into the ragged-set form.

    Args:
        batch: b items ``(members (n_i, ...), set_id)``; every members tensor has the same trailing shape.

    Returns:
        members (N, ...) with N = Σ n_i, the sets concatenated in batch order; offsets (b+1,) int64 with
        set k = members[offsets[k]:offsets[k+1]]; set_ids (b,) int64. An empty batch gives members of
        shape (0,), offsets [0] and no set ids.
    """
    if len(batch) == 0:
        return torch.empty(0), torch.zeros(1, dtype=torch.int64), torch.empty(0, dtype=torch.int64)
    tensors = [members for members, _ in batch]
    set_ids = torch.tensor([int(set_id) for _, set_id in batch], dtype=torch.int64)
    for members, set_id in zip(tensors, set_ids.tolist()):
        if members.dim() == 0 or members.shape[1:] != tensors[0].shape[1:]:
            raise ValueError(f"set {set_id}: members of shape {tuple(members.shape)} do not pack with set "
                             f"{int(set_ids[0])} of shape {tuple(tensors[0].shape)} (trailing dims must match)")
    sizes = torch.tensor([members.shape[0] for members in tensors], dtype=torch.int64)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), sizes.cumsum(0)])
    return torch.cat(tensors), offsets, set_ids


class RaggedBatchSampler(Sampler[list[int]]):
    """Batch sampler packing whole sets into batches of at most ``max_images`` members.

    Sets are taken in order (set id order, or a permutation drawn from (seed, epoch) when ``shuffle``)
    and packed greedily: a set joins the current batch if the batch stays within ``max_images``,
    otherwise it starts the next batch. A set larger than ``max_images`` goes alone in its batch (sets
    are never split; the attention's θ segmentation is the place to cut large sets).

    Args:
        sizes: number of members of each set (e.g. ``RaggedSetDataset.sizes``); each >= 1.
        max_images: bound on the members of one batch, >= 1.
        shuffle: permute the sets each epoch (see :meth:`set_epoch`).
        seed: int >= 0; the order is a function of (seed, epoch) only.

    Yields lists of set ids; ``DataLoader(dataset, batch_sampler=..., collate_fn=collate_ragged)``.
    """

    def __init__(self, sizes: Sequence[int], max_images: int, *, shuffle: bool = False, seed: int = 0):
        self.sizes = label_vector(sizes, "sizes")
        if self.sizes.size and self.sizes.min() < 1:
            i = int(np.argmax(self.sizes < 1))
            raise ValueError(f"sizes[{i}] = {int(self.sizes[i])}: every set needs at least one member")
        self.max_images = check_int("max_images", max_images, 1)
        self.shuffle = bool(shuffle)
        self.seed = check_int("seed", seed, 0)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order is drawn (only matters with ``shuffle``), as DistributedSampler."""
        self.epoch = check_int("epoch", epoch, 0)

    def _batches(self) -> list[list[int]]:
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(self.sizes.size) if self.shuffle
                 else np.arange(self.sizes.size))
        batches: list[list[int]] = []
        current: list[int] = []
        total = 0
        for set_id, size in zip(order.tolist(), self.sizes[order].tolist()):
            if current and total + size > self.max_images:
                batches.append(current)
                current, total = [], 0
            current.append(set_id)
            total += size
        if current:
            batches.append(current)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        # Greedy packing depends on the order, so the count is that of this epoch's order.
        return len(self._batches())


def sets_from_labels(labels: Sequence[int] | torch.Tensor | np.ndarray) -> tuple[list[int], list[list[int]]]:
    """Group indices by label (identity, template or video id).

    Args:
        labels: (N,) ints, e.g. the template id of every image row of an IJB meta file.

    Returns:
        (keys, sets): keys the distinct labels in ascending order, sets[k] the indices i with
        labels[i] == keys[k] in ascending order. Empty labels give ([], []).
    """
    array = label_vector(labels)
    keys, codes = np.unique(array, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(keys.size + 1))
    indices = order.tolist()
    return keys.tolist(), [indices[start:end] for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist())]


def resample_frames(num_frames: int, target: int) -> torch.Tensor:
    """Indices of ``target`` evenly spaced frames of a ``num_frames``-frame video.

    Frame i of the result is ⌊(i + ½)·num_frames / target⌋, the frame under the centre of the i-th of
    ``target`` equal slices of the video (computed in integers, so exact). The indices are
    non-decreasing; strictly increasing when num_frames >= target; when the video is shorter every frame
    appears, ⌊target/num_frames⌋ or ⌈target/num_frames⌉ times, consecutively.

    Args:
        num_frames: frames in the video, >= 1 (>= 0 when target is 0).
        target: frames wanted, >= 0.

    Returns:
        (target,) int64 frame indices in [0, num_frames).
    """
    for value, name in ((num_frames, "num_frames"), (target, "target")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name}: expected an int >= 0, got {value!r}")
    if target == 0:
        return torch.empty(0, dtype=torch.int64)
    if num_frames == 0:
        raise ValueError(f"num_frames: cannot resample an empty video to target = {target} frames")
    return (2 * torch.arange(target, dtype=torch.int64) + 1) * num_frames // (2 * target)


def chunk_frames(frames: Sequence[Any] | torch.Tensor, size: int) -> list[Any]:
    """Cut ``frames`` (a list, range or tensor of frame ids) into consecutive chunks of ``size``.

    Returns ⌈len(frames)/size⌉ slices of ``frames`` (same type), all of ``size`` frames but the last,
    which holds the remaining 1..size frames. Resample first (:func:`resample_frames` to N·n_avg) for
    chunks of equal size. Empty frames give [].
    """
    size = check_int("size", size, 1)
    return [frames[start:start + size] for start in range(0, len(frames), size)]

