"""Training batches that a resumed run reproduces exactly, with any number of workers and ranks.

An epoch's batches are a pure function of (seed, epoch): :class:`GlobalBatchSampler` deals global
batches of ``batch_size × world_size`` images from a (seed, epoch) permutation, rank r taking the
r-th slice of each (so the ranks' batches, concatenated in rank order, are the global batch a single
process would take). :class:`ResumableBatches` skips to a batch position without loading anything
and tags every index with the batch's augmentation seed, which :class:`AugmentCollate` uses: the
augmentation of a batch depends on (seed, epoch, batch, rank) only, not on which worker collates it.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from ..data import ImageFolderDataset, RecordDataset
from ..data.transforms import augment as A

__all__ = ["open_dataset", "build_augment", "GlobalBatchSampler", "ResumableBatches", "AugmentCollate",
           "make_loader", "mix_seed", "resize_faces", "SkipCounter", "SkippedImagesError", "AUGMENTS"]

AUGMENTS: dict[str, Callable[[], Callable]] = {
    "flip": A.RandomHorizontalFlip,
    "low_quality": A.LowQualityAugment,
    "motion_blur": A.RandomMotionBlur,
    "down_up": A.RandomDownUp,
    "occlusion": A.RandomOcclusion,
    # brightness, contrast and saturation jitter alone (ColorJitter 0.5 each, always applied)
    "photometric": partial(A.LowQualityAugment, p_crop=0.0, p_photometric=1.0, p_low_res=0.0),
    # QAFace Tab. 5 (Sec. 4.4): random cropping and/or down-sampling, LowQualityAugment's two steps
    # without its photometric jitter, each drawn per image with probability p (0.2 under the plain
    # name, the table's best and the recipe's; 0.1 under "<name>@0.1").
    **{name + suffix: partial(A.LowQualityAugment, p_crop=p if crop else 0.0, p_low_res=p if down_sample else 0.0,
                              p_photometric=0.0)
       for name, crop, down_sample in (("crop", True, False), ("down_sample", False, True),
                                       ("crop_down_sample", True, True))
       for suffix, p in (("", 0.2), ("@0.1", 0.1))},
}
"""Names of ``data.augment`` and the transforms they build (their defaults)."""


def open_dataset(path: str | os.PathLike, on_error: str = "raise") -> Dataset:
    """The training set at ``path``: a RecordIO folder (``train.rec`` + ``train.idx``), a ``.rec``
    file, or an image folder (one sub-folder per identity), with ``on_error`` (``raise`` or ``skip``,
    ``data.on_error``). Items are (uint8 (3, H, W), int label); the dataset has ``labels`` (N,) int64
    and ``videos`` (N,) int64 video ids, or None without them."""
    path = Path(path)
    if not str(path) or not path.exists():
        raise FileNotFoundError(f"data.train: {path!s} does not exist (a RecordIO folder with train.rec/train.idx, "
                                "or an image folder with one sub-folder per identity)")
    if path.suffix == ".rec" or (path / "train.rec").is_file():
        return RecordDataset(path, on_error=on_error)
    if path.is_dir():
        return ImageFolderDataset(path, on_error=on_error)
    raise ValueError(f"data.train: {path} is neither a RecordIO set (train.rec) nor an image folder")


def build_augment(names: Sequence[str]) -> Callable | None:
    """The composed batch augmentation of ``data.augment`` names (None for none)."""
    unknown = [n for n in names if n not in AUGMENTS]
    if unknown:
        raise ValueError(f"data.augment: unknown {unknown[0]!r}; valid: {', '.join(AUGMENTS)}")
    transforms = [AUGMENTS[n]() for n in names]
    return A.Compose(transforms) if transforms else None


def mix_seed(*parts: int) -> int:
    """A 63-bit seed mixing the parts (splitmix64 steps), so nearby tuples give unrelated streams."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 31
    return value & 0x7FFFFFFFFFFFFFFF


class GlobalBatchSampler(Sampler[list[int]]):
    """Shuffled batches of ``batch_size`` indices for rank ``rank``, slices of global batches.

    Epoch e permutes range(n) with a generator seeded by (seed, e); global batch k is the permutation's
    items [k·G, (k+1)·G) with G = batch_size·world_size, and this rank takes its items
    [rank·batch_size, (rank+1)·batch_size). The incomplete last global batch is dropped (every rank
    steps the same number of times, every batch has the same size).
    """

    def __init__(self, num_items: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        if num_items < batch_size * world_size:
            raise ValueError(f"the training set has {num_items} images, fewer than one global batch "
                             f"({batch_size} × {world_size} processes)")
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items // (self.batch_size * self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        order = torch.randperm(self.num_items, generator=generator)
        size = self.batch_size * self.world_size
        start = self.rank * self.batch_size
        for k in range(len(self)):
            yield order[k * size + start:k * size + start + self.batch_size].tolist()


class ResumableBatches(Sampler[list[tuple[int, int]]]):
    """Wraps a batch sampler with ``set_epoch``: starts at batch ``start`` and tags each index with
    the batch's augmentation seed, a function of (seed, epoch, batch position, rank)."""

    def __init__(self, batches: Sampler[list[int]], seed: int, rank: int = 0):
        self.batches, self.seed, self.rank = batches, seed, rank
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from its batch ``start`` on."""
        self.epoch, self.start = epoch, start
        self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return max(0, len(self.batches) - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for k, batch in enumerate(self.batches):
            if k >= self.start:
                seed = mix_seed(self.seed, self.epoch, k, self.rank, 1)
                yield [(int(i), seed) for i in batch]


class SkippedImagesError(ValueError):
    """More unreadable images were skipped in an epoch than ``data.max_skipped`` allows."""


class SkipCounter:
    """Unreadable images skipped by a dataset (``on_error="skip"``), counted across DataLoader workers:
    a shared-memory slot per process (0: the loading process, 1 + i: worker i), each written by its own
    process only, so no count is lost to a race; :meth:`total` sums them.

    Args:
        num_workers: the DataLoader's workers.
    """

    def __init__(self, num_workers: int):
        self.slots = torch.zeros(num_workers + 1, dtype=torch.int64).share_memory_()

    def add(self, count: int) -> None:
        """Count ``count`` skipped images in this process's slot."""
        worker = get_worker_info()
        self.slots[0 if worker is None else worker.id + 1] += count

    def total(self) -> int:
        """Images skipped so far, by every process."""
        return int(self.slots.sum())


class _Tagged(Dataset):
    """Reads ``dataset[index]`` for an (index, seed) item and passes the seed on; counts the bad items
    the dataset skipped on the way (its ``skipped``) in ``skips``."""

    def __init__(self, dataset: Dataset, skips: SkipCounter | None = None):
        self.dataset, self.skips = dataset, skips

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        index, seed = item
        before = getattr(self.dataset, "skipped", 0)
        image, label = self.dataset[index]
        if self.skips is not None and getattr(self.dataset, "skipped", 0) != before:
            self.skips.add(self.dataset.skipped - before)
        return image, label, seed


def resize_faces(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, 3, H, W) faces resized to (B, 3, size, size) (bilinear, antialiased); as they are
    when already that size."""
    if images.shape[-2:] == (size, size):
        return images
    resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


class AugmentCollate:
    """Collates (image, label, seed) items into uint8 images (B, 3, S, S) and int64 labels (B,):
    resized to ``image_size`` when stored at another size (bilinear, antialiased), then augmented by
    ``augment(images, generator)`` seeded with the batch's seed. With ``set_size`` the batch is b
    consecutive sets of T images and an offsets (b+1,) tensor is returned too."""

    def __init__(self, image_size: int, augment: Callable | None = None, set_size: int | None = None):
        self.image_size, self.augment, self.set_size = image_size, augment, set_size

    def __call__(self, items):
        images = torch.stack([image for image, _, _ in items])
        labels = torch.tensor([int(label) for _, label, _ in items], dtype=torch.int64)
        images = resize_faces(images, self.image_size)
        if self.augment is not None:
            images = self.augment(images, torch.Generator().manual_seed(items[0][2]))
        if self.set_size is None:
            return images, labels
        offsets = torch.arange(len(items) // self.set_size + 1, dtype=torch.int64) * self.set_size
        return images, labels, offsets


def make_loader(dataset: Dataset, batches: ResumableBatches, collate: AugmentCollate, num_workers: int,
                pin_memory: bool = False, skips: SkipCounter | None = None) -> DataLoader:
    """A DataLoader over ``batches`` (call ``batches.set_position`` before iterating it); the images
    ``dataset`` skips are counted in ``skips``."""
    # Its own generator: a DataLoader draws its workers' base seed from the global RNG at every
    # iter() otherwise, so a resumed run (which starts an iterator mid-epoch) would shift dropout.
    # Persistent workers: the batches are drawn in this process, the workers only read and collate
    # them, so they can outlive an epoch (saving their start-up, ~1 s on 2 cores, at every epoch).
    return DataLoader(_Tagged(dataset, skips), batch_sampler=batches, collate_fn=collate, num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=num_workers > 0,
                      generator=torch.Generator().manual_seed(0))
