"""SetSampler invariants (shape of batches, coverage, determinism, sharding, layout, sets of one video)
and collate_sets."""
from __future__ import annotations

import functools
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pyfacex.data.samplers import SetSampler, collate_sets, group_by_video


def _labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


def _runs(batch, labels, t):
    return labels[np.asarray(batch)].reshape(-1, t)


def test_batches_are_b_runs_of_t_images_of_one_identity():
    labels = _labels([7, 3, 1, 5, 9, 2, 4])
    b, t = 3, 3
    sampler = SetSampler(labels, b, t, seed=5)
    batches = list(sampler)
    assert len(batches) == len(sampler) == -(-sampler.num_sets // b)
    assert sampler.num_sets == 3 + 1 + 1 + 2 + 3 + 1 + 2
    for batch in batches[:-1]:
        assert len(batch) == b * t
    assert len(batches[-1]) == (sampler.num_sets % b or b) * t
    for batch in batches:
        runs = _runs(batch, labels, t)
        assert (runs == runs[:, :1]).all()


def test_every_image_exactly_once_when_t_divides_every_identity():
    labels = np.random.default_rng(0).permutation(_labels([6, 3, 9, 3, 12]))  # identities interleaved
    seen = [i for batch in SetSampler(labels, 2, 3, seed=1) for i in batch]
    assert sorted(seen) == list(range(labels.size))


def test_fill_cycles_through_the_identity():
    # Identity 0: 7 images, T = 3 -> 3 sets; identity 1: 2 images -> 1 set holding both, one twice.
    labels = _labels([7, 2])
    sampler = SetSampler(labels, 1, 3, seed=3)
    sets = [tuple(batch) for batch in sampler]
    by_identity = {0: [], 1: []}
    for s in sets:
        by_identity[int(labels[s[0]])].append(s)
    assert len(by_identity[0]) == 3 and len(by_identity[1]) == 1
    images_0 = Counter(i for s in by_identity[0] for i in s)
    assert set(images_0) == set(range(7)) and sorted(images_0.values()) == [1] * 5 + [2] * 2
    assert all(len(set(s)) == 3 for s in by_identity[0])  # no repeat within a set when n >= T
    assert sorted(Counter(by_identity[1][0]).values()) == [1, 2]


def test_same_seed_same_order_other_epoch_or_seed_differs():
    labels = _labels([5] * 40)
    a, b = SetSampler(labels, 4, 5, seed=7), SetSampler(labels, 4, 5, seed=7)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert sorted(i for batch in a for i in batch) == sorted(i for batch in first for i in batch)
    assert list(SetSampler(labels, 4, 5, seed=8)) != first


def test_distinct_identities_within_a_batch():
    # Identity 0 holds 4 of 13 sets; with 5 batches it still never appears twice in one batch.
    labels = _labels([12] + [3] * 9)
    for epoch in range(5):
        sampler = SetSampler(labels, 3, 3, seed=0)
        sampler.set_epoch(epoch)
        for batch in sampler:
            identities = _runs(batch, labels, 3)[:, 0]
            assert len(set(identities.tolist())) == len(identities)


def test_free_layout_still_covers_everything():
    labels = _labels([3] * 10)
    batches = list(SetSampler(labels, 4, 3, seed=2, distinct_identities=False))
    assert sorted(i for batch in batches for i in batch) == list(range(30))
    assert [len(batch) for batch in batches] == [12, 12, 6]


def test_drop_last_keeps_only_full_batches():
    sampler = SetSampler(_labels([3] * 10), 4, 3, drop_last=True)
    assert len(sampler) == 2 and [len(batch) for batch in sampler] == [12, 12]


@pytest.mark.parametrize("drop_last", [True, False])
def test_rank_shards_are_disjoint_equal_and_cover_the_epoch(drop_last):
    labels = _labels([3] * 24)  # 24 sets, b = 2: 12 batches over 3 ranks
    whole = list(SetSampler(labels, 2, 3, seed=4, drop_last=drop_last))
    shards = [list(SetSampler(labels, 2, 3, seed=4, drop_last=drop_last, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    flat = [tuple(batch) for shard in shards for batch in shard]
    assert len(set(flat)) == 12 and set(flat) == {tuple(batch) for batch in whole}


def test_ranks_get_the_same_number_of_batches_when_uneven():
    labels = _labels([3] * 7)  # 7 sets, b = 2: 4 batches (last one partial) over 3 ranks
    for drop_last, expected in ((True, 1), (False, 2)):
        lengths = {len(list(SetSampler(labels, 2, 3, drop_last=drop_last, rank=r, world_size=3))) for r in range(3)}
        assert lengths == {expected}
        assert len(SetSampler(labels, 2, 3, drop_last=drop_last, world_size=3)) == expected
    shards = [list(SetSampler(labels, 2, 3, drop_last=True, rank=r, world_size=3)) for r in range(3)]
    assert len({tuple(shard[0]) for shard in shards}) == 3


def test_with_videos_every_set_is_frames_of_one_video_and_identities_stay_apart():
    # identity 0: videos 4 (5 frames) and 9 (2 frames); identity 1: video 4 (6 frames, the same id as
    # identity 0's: ids need only be unique within an identity); identities 2..7: one video of 3.
    labels = np.array([0] * 7 + [1] * 6 + [i for i in range(2, 8) for _ in range(3)])
    videos = np.array([4, 9, 4, 4, 9, 4, 4] + [4] * 6 + [i for i in range(2, 8) for _ in range(3)])
    order = np.random.default_rng(0).permutation(labels.size)  # items interleaved
    labels, videos = labels[order], videos[order]
    sampler = SetSampler(labels, 3, 3, seed=2, videos=torch.from_numpy(videos))
    assert sampler.num_sets == 2 + 1 + 2 + 6  # ⌈5/3⌉ + ⌈2/3⌉ + ⌈6/3⌉ + 6·1, per video
    for epoch in range(4):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        seen = set()
        for batch in batches:
            runs, run_videos = _runs(batch, labels, 3), _runs(batch, videos, 3)
            assert (runs == runs[:, :1]).all() and (run_videos == run_videos[:, :1]).all()
            assert len(set(runs[:, 0].tolist())) == len(runs)  # distinct identities in a batch
            seen.update(batch)
        assert seen == set(range(labels.size))
        sampler.set_epoch(epoch)
        assert list(sampler) == batches  # a function of (seed, epoch)


def test_group_by_video():
    order, group, counts = group_by_video(np.array([1, 0, 1, 1, 0]), np.array([5, 2, 3, 5, 2]))
    assert order.tolist() == [1, 4, 2, 0, 3] and group.tolist() == [2, 0, 1, 2, 0] and counts.tolist() == [2, 1, 2]


@pytest.mark.parametrize("kwargs, name", [
    (dict(labels=[0, 1], sets_per_batch=0, set_size=2), "sets_per_batch"),
    (dict(labels=[0, 1], sets_per_batch=2, set_size=0), "set_size"),
    (dict(labels=[], sets_per_batch=2, set_size=2), "labels"),
    (dict(labels=[[0, 1]], sets_per_batch=2, set_size=2), "labels"),
    (dict(labels=[0.5, 1.0], sets_per_batch=2, set_size=2), "labels"),
    (dict(labels=[0, -1], sets_per_batch=2, set_size=2), "labels"),
    (dict(labels=[0, 1], sets_per_batch=2, set_size=2, rank=2, world_size=2), "rank"),
    (dict(labels=[0, 1], sets_per_batch=2, set_size=2, rank=-1), "rank"),
    (dict(labels=[0, 1], sets_per_batch=2, set_size=2, world_size=0), "world_size"),
    (dict(labels=[0, 1], sets_per_batch=2, set_size=2, seed=-3), "seed"),
    (dict(labels=[0, 1], sets_per_batch=2, set_size=2, videos=[0]), "videos"),
    (dict(labels=[0, 1], sets_per_batch=2, set_size=2, videos=[0.5, 1.0]), "videos"),
])
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        SetSampler(**kwargs)


def test_dataloader_with_collate_sets():
    labels = torch.tensor(_labels([4, 2, 6]))
    images = torch.arange(12, dtype=torch.uint8).view(12, 1, 1, 1).expand(12, 3, 2, 2)
    loader = DataLoader(TensorDataset(images, labels), batch_sampler=SetSampler(labels, 2, 2, seed=1),
                        collate_fn=functools.partial(collate_sets, set_size=2))
    batches = list(loader)
    assert len(batches) == 3
    for (x, y, offsets), indices in zip(batches, SetSampler(labels, 2, 2, seed=1)):
        assert x.shape == (4, 3, 2, 2) and x.dtype == torch.uint8
        assert x[:, 0, 0, 0].tolist() == indices  # image i carries value i
        assert torch.equal(y, labels[indices]) and torch.equal(offsets, torch.tensor([0, 2, 4]))


def test_collate_sets_rejects_mixed_runs():
    batch = [(torch.zeros(3, 2, 2), 0), (torch.zeros(3, 2, 2), 0), (torch.zeros(3, 2, 2), 0), (torch.zeros(3, 2, 2), 1)]
    with pytest.raises(ValueError, match="set 1"):
        collate_sets(batch, set_size=2)
    with pytest.raises(ValueError, match="set_size"):
        collate_sets(batch, set_size=3)
