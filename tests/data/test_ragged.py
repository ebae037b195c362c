"""Ragged template/video loading: collate offsets, the image-bounded batch sampler, workers, set_max, frames."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import pyfacex.ops as ops
from pyfacex.data.ragged import (
    RaggedBatchSampler,
    RaggedSetDataset,
    chunk_frames,
    collate_ragged,
    resample_frames,
    sets_from_labels,
)

TABLE = torch.randn(40, 4, 2)  # member m loads as TABLE[m]


def test_collate_packs_sets_with_offsets():
    sets = [[3, 1], [0, 5, 2], [7]]
    dataset = RaggedSetDataset(sets, TABLE.__getitem__)
    members, offsets, set_ids = collate_ragged([dataset[2], dataset[0], dataset[1]])
    assert offsets.dtype == torch.int64 and offsets.tolist() == [0, 1, 3, 6]
    assert set_ids.tolist() == [2, 0, 1]
    assert torch.equal(members, TABLE[[7, 3, 1, 0, 5, 2]])


def test_batches_respect_max_images_and_pack_greedily():
    sizes = np.random.default_rng(0).integers(1, 9, 60).tolist() + [15, 2]  # one set larger than the bound
    sampler = RaggedBatchSampler(sizes, max_images=10)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert [i for batch in batches for i in batch] == list(range(len(sizes)))  # deterministic set order
    totals = [sum(sizes[i] for i in batch) for batch in batches]
    for batch, total in zip(batches, totals):
        assert total <= 10 or len(batch) == 1
    assert [15] in [[sizes[i] for i in batch] for batch in batches]
    for batch, following in zip(batches, batches[1:]):  # greedy: the next set would not have fitted
        assert sum(sizes[i] for i in batch) + sizes[following[0]] > 10


def test_shuffle_is_seeded_and_varies_by_epoch():
    sizes = [1, 2, 3, 4, 5, 6, 7, 8] * 3
    a = RaggedBatchSampler(sizes, 9, shuffle=True, seed=3)
    first = list(a)
    assert list(RaggedBatchSampler(sizes, 9, shuffle=True, seed=3)) == first
    assert sorted(i for batch in first for i in batch) == list(range(len(sizes)))
    a.set_epoch(1)
    assert list(a) != first and len(a) == len(list(a))


def test_dataloader_workers_equal_single_process_and_feed_set_max():
    sets = [list(range(s, s + n)) for s, n in zip(range(0, 36, 3), [3, 1, 5, 2, 2, 4, 3, 1, 6, 2, 3, 3])]
    dataset = RaggedSetDataset(sets, TABLE.__getitem__)

    def load(workers):
        sampler = RaggedBatchSampler(dataset.sizes, max_images=7, shuffle=True, seed=1)
        return list(DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_ragged, num_workers=workers))

    single, parallel = load(0), load(2)
    assert len(single) == len(parallel) > 1
    for (m0, o0, s0), (m2, o2, s2) in zip(single, parallel):
        assert torch.equal(m0, m2) and torch.equal(o0, o2) and torch.equal(s0, s2)
    for members, offsets, set_ids in single:
        expected = torch.stack([TABLE[sets[i]].amax(0) for i in set_ids.tolist()])
        assert torch.equal(ops.set_max(members, offsets), expected)


def test_empty_set_and_bad_members_are_rejected_by_set_id():
    with pytest.raises(ValueError, match=r"sets\[1\] is empty"):
        RaggedSetDataset([[0], [], [1]], TABLE.__getitem__)
    with pytest.raises(ValueError, match=r"sizes\[2\]"):
        RaggedBatchSampler([1, 3, 0], 4)
    with pytest.raises(ValueError, match="max_images"):
        RaggedBatchSampler([1, 3], 0)
    ragged_table = RaggedSetDataset([[0, 1]], lambda m: torch.zeros(m + 1))
    with pytest.raises(ValueError, match="set 0: member 1"):
        ragged_table[0]
    with pytest.raises(ValueError, match="set 4"):
        collate_ragged([(torch.zeros(2, 3), 1), (torch.zeros(2, 4), 4)])


def test_empty_inputs():
    assert list(RaggedBatchSampler([], 4)) == [] and len(RaggedBatchSampler([], 4)) == 0
    members, offsets, set_ids = collate_ragged([])
    assert members.numel() == 0 and offsets.tolist() == [0] and set_ids.numel() == 0
    assert sets_from_labels([]) == ([], [])
    assert chunk_frames([], 3) == []


def test_sets_from_labels_groups_indices():
    keys, sets = sets_from_labels(torch.tensor([7, 2, 7, 9, 2, 7]))
    assert keys == [2, 7, 9] and sets == [[1, 4], [0, 2, 5], [3]]
    with pytest.raises(TypeError, match="labels"):
        sets_from_labels([0.5, 1.5])


@pytest.mark.parametrize("num_frames, target", [(100, 8), (8, 8), (9, 8), (3, 8), (1, 5), (5, 13)])
def test_resample_frames_properties(num_frames, target):
    index = resample_frames(num_frames, target)
    assert index.dtype == torch.int64 and index.shape == (target,)
    assert index.min() >= 0 and index.max() < num_frames
    steps = index.diff()
    assert (steps >= 0).all()
    if num_frames >= target:
        assert (steps >= 1).all()  # distinct frames
        assert steps.max() - steps.min() <= 1  # evenly spaced
    else:
        counts = Counter(index.tolist())
        assert sorted(counts) == list(range(num_frames))  # every frame, each ⌊t/n⌋ or ⌈t/n⌉ times
        assert set(counts.values()) <= {target // num_frames, -(-target // num_frames)}


def test_resample_frames_edges_and_chunks():
    assert resample_frames(10, 2).tolist() == [2, 7]  # centres of the two halves
    assert resample_frames(0, 0).numel() == 0
    with pytest.raises(ValueError, match="num_frames"):
        resample_frames(0, 4)
    with pytest.raises(ValueError, match="target"):
        resample_frames(4, -1)
    frames = resample_frames(7, 3 * 4)  # YTF style: N = 4 frames per chunk, 3 chunks
    chunks = chunk_frames(frames, 4)
    assert len(chunks) == 3 and torch.equal(torch.cat(chunks), frames)
    assert chunk_frames(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError, match="size"):
        chunk_frames([1, 2], 0)
