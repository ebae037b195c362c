"""Set sampling for LFENet training (LFENet Sec. III-B): batches of b sets × T images of one identity.

"b image sets which contain T_tr images in each are randomly chosen in a batch, thus each batch
contains B = b × T_tr images"; the loss is a classification loss on every image, so the sampler only
has to give the LIT module sets of one identity packed consecutively.

An epoch, drawn from (seed, epoch) alone:

1. every identity (distinct label) with n images has its images shuffled and cut into ⌈n/T⌉
   consecutive sets of T; the last set, when n is not a multiple of T, is completed by cycling from
   the start of the identity's shuffled list. Hence every image appears at least once per epoch,
   exactly once when T divides n; a set repeats an image only when n < T (then it holds every image
   of the identity, each ⌊T/n⌋ or ⌈T/n⌉ times). With video ids, the same holds per video instead of
   per identity (every set is T frames of one video), the videos of an identity kept together in a
   random order, so that step 2 still keeps identities apart;
2. the sets are laid out in batches of b sets. With ``distinct_identities`` (default) the sets,
   grouped by identity in a shuffled identity order, are dealt to the batches column by column, so
   the sets of one identity land in different batches: every batch holds b distinct identities
   whenever no identity has more sets than there are batches minus one (a repeat is unavoidable only
   when one identity holds a large share of all sets). Otherwise the sets are shuffled freely and
   a batch may hold two sets of one identity (harmless for LFENet's per-image loss, and cheaper);
3. the batches are shuffled; an incomplete last batch (fewer than b sets) stays last, or is dropped
   with ``drop_last``;
4. ranks: all ranks draw the same epoch and rank r takes batches r, r + world_size, ... With
   ``drop_last`` the tail is cut so every rank gets ⌊batches/world_size⌋ disjoint batches; without it,
   as DistributedSampler, the list is padded to a multiple of world_size by repeating its first
   batches (so shards are disjoint when world_size divides the number of batches).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from ._args import check_int, label_vector

__all__ = ["SetSampler", "collate_sets", "group_by_video"]


def group_by_video(codes: np.ndarray, videos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items grouped by (identity, video): video ids need only be unique within an identity.

    Args:
        codes, videos: (N,) int64 identity and video id of every item.
    Returns:
        order (N,): item indices sorted by identity, then video, then index (a stable sort);
        group (N,): the (identity, video) group of every item, numbered in that order;
        counts (G,): items per group.
    """
    order = np.lexsort((videos, codes))
    sorted_codes, sorted_videos = codes[order], videos[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = (sorted_codes[1:] != sorted_codes[:-1]) | (sorted_videos[1:] != sorted_videos[:-1])
    group = np.empty(order.size, dtype=np.int64)
    group[order] = np.cumsum(first) - 1
    return order, group, np.diff(np.append(np.flatnonzero(first), order.size))


class SetSampler(Sampler[list[int]]):
    """Batch sampler yielding b·T dataset indices per batch: b consecutive runs of T images of one identity.

    Args:
        labels: (N,) identity of every dataset item (a sequence, numpy array or integer tensor, e.g.
            ``RecordDataset.labels``); ints >= 0, at least one.
        sets_per_batch: b >= 1.
        set_size: T >= 1 images per set (the paper's best is 3).
        seed: int >= 0; with the epoch it determines the whole order.
        videos: optional (N,) video id of every item (e.g. ``RecordDataset.videos``; unique within an
            identity at least): every set is then frames of one video (see the module docstring).
        distinct_identities: lay out the sets so that the sets of one batch have distinct identities
            (see the module docstring for when that is possible); False shuffles sets freely.
        drop_last: drop the incomplete last batch and the batches that do not divide among ranks.
        rank, world_size: this process's shard, 0 <= rank < world_size.

    Use as ``DataLoader(dataset, batch_sampler=SetSampler(...), collate_fn=partial(collate_sets,
    set_size=T))`` and call :meth:`set_epoch` before every epoch. The sampler runs in the main process;
    workers only receive index lists, so any ``num_workers`` gives the same batches.
    """

    def __init__(self, labels: Sequence[int] | torch.Tensor | np.ndarray, sets_per_batch: int, set_size: int,
                 seed: int = 0, *, videos: Sequence[int] | torch.Tensor | np.ndarray | None = None,
                 distinct_identities: bool = True, drop_last: bool = False, rank: int = 0, world_size: int = 1):
        array = label_vector(labels)
        if array.size == 0:
            raise ValueError("labels: expected at least one labelled image, got an empty sequence")
        if array.min() < 0:
            i = int(np.argmax(array < 0))
            raise ValueError(f"labels: identities must be >= 0, got labels[{i}] = {int(array[i])}")
        self.sets_per_batch = check_int("sets_per_batch", sets_per_batch, 1)
        self.set_size = check_int("set_size", set_size, 1)
        self.world_size = check_int("world_size", world_size, 1)
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < self.world_size:
            raise ValueError(f"rank: expected an int in [0, world_size = {self.world_size}), got {rank!r}")
        self.rank = int(rank)
        self.seed = check_int("seed", seed, 0)
        self.distinct_identities = bool(distinct_identities)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        _, self._codes, self._counts = np.unique(array, return_inverse=True, return_counts=True)
        # What sets are cut from: identities, or (identity, video) groups with their identity.
        self._units, self._unit_counts, self._unit_identity = self._codes, self._counts, None
        if videos is not None:  # ... or their videos
            video_ids = label_vector(videos, "videos")
            if video_ids.shape != array.shape:
                raise ValueError(f"videos: expected one video id per label ({array.size}), got {video_ids.size}")
            order, self._units, self._unit_counts = group_by_video(self._codes, video_ids)
            self._unit_identity = self._codes[order][np.cumsum(self._unit_counts) - self._unit_counts]
        self.num_sets = int((-(-self._unit_counts // self.set_size)).sum())  # Σ over identities (videos) of ⌈n/T⌉

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch to draw; call it with the same value on every rank, as DistributedSampler."""
        self.epoch = check_int("epoch", epoch, 0)

    def _global_batches(self) -> int:
        full, rest = divmod(self.num_sets, self.sets_per_batch)
        return full + (rest > 0 and not self.drop_last)

    def __len__(self) -> int:
        batches = self._global_batches()
        return batches // self.world_size if self.drop_last else -(-batches // self.world_size)

    def _sets(self, rng: np.random.Generator) -> np.ndarray:
        """(num_sets, T) dataset indices, grouped by identity in a random identity order (step 1)."""
        t = self.set_size
        rank_of = rng.permutation(self._counts.size)  # identity -> its position in this epoch
        shuffled = rng.permutation(self._codes.size)
        if self._unit_identity is not None:  # videos: an identity's videos together, in a random order
            units = self._unit_counts.size
            rank_of = rank_of[self._unit_identity] * units + rng.permutation(units)
        order = shuffled[np.argsort(rank_of[self._units[shuffled]], kind="stable")]
        counts = self._unit_counts[np.argsort(rank_of)]  # per identity (video), in epoch order
        starts = np.cumsum(counts) - counts
        slots = -(-counts // t) * t
        owner = np.repeat(np.arange(counts.size), slots)
        within = np.arange(owner.size) - np.repeat(np.cumsum(slots) - slots, slots)
        return order[starts[owner] + within % counts[owner]].reshape(-1, t)

    def _layout(self, rng: np.random.Generator) -> np.ndarray:
        """Permutation of the grouped sets that reads as consecutive batches of b sets (step 2)."""
        s, b = self.num_sets, self.sets_per_batch
        if not self.distinct_identities:
            return rng.permutation(s)
        # Deal column by column into an (nb, b) grid whose last row holds the r leftover sets: a run of
        # at most nb - 1 sets of one identity then never meets the same row (batch) twice.
        nb = -(-s // b)
        r = s - (nb - 1) * b
        j = np.arange(s)
        tall = j < r * nb  # the r columns that reach the last row
        rest = np.maximum(nb - 1, 1)
        col = np.where(tall, j // nb, r + (j - r * nb) // rest)
        row = np.where(tall, j % nb, (j - r * nb) % rest)
        return np.argsort(row * b + col)

    def _batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        sets = self._sets(rng)
        flat = sets[self._layout(rng)].reshape(-1)
        per_batch = self.sets_per_batch * self.set_size
        full = self.num_sets // self.sets_per_batch
        batches = list(flat[:full * per_batch].reshape(full, per_batch)[rng.permutation(full)])
        if full * per_batch < flat.size and not self.drop_last:
            batches.append(flat[full * per_batch:])
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        total = len(self) * self.world_size
        for i in range(self.rank, total, self.world_size):
            yield batches[i % len(batches)].tolist()  # i >= len(batches) only when padding


def collate_sets(batch: Sequence[tuple[torch.Tensor, int | torch.Tensor]], set_size: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Collate a :class:`SetSampler` batch of b·T ``(image, label)`` items into ragged-set form.

    Args:
        batch: b·T items, consecutive runs of ``set_size`` sharing one label; images of one shape
            (e.g. (3, H, W) uint8).
        set_size: T. Bind it with ``functools.partial(collate_sets, set_size=T)`` for a DataLoader.

    Returns:
        images (b·T, *image shape), labels (b·T,) int64, offsets (b+1,) int64 = [0, T, 2T, ..., bT].
        An empty batch gives images of shape (0,), no labels and offsets [0].
    """
    set_size = check_int("set_size", set_size, 1)
    if len(batch) == 0:
        return torch.empty(0), torch.empty(0, dtype=torch.int64), torch.zeros(1, dtype=torch.int64)
    if len(batch) % set_size:
        raise ValueError(f"batch: expected a multiple of set_size = {set_size} items, got {len(batch)}")
    images = torch.stack([image for image, _ in batch])
    labels = torch.tensor([int(label) for _, label in batch], dtype=torch.int64)
    runs = labels.view(-1, set_size)
    mixed = (runs != runs[:, :1]).any(1)
    if bool(mixed.any()):
        k = int(mixed.nonzero()[0])
        raise ValueError(f"batch: set {k} (items {k * set_size}..{(k + 1) * set_size - 1}) mixes labels "
                         f"{runs[k].tolist()}; each run of set_size items must share one identity")
    offsets = torch.arange(runs.shape[0] + 1, dtype=torch.int64) * set_size
    return images, labels, offsets
