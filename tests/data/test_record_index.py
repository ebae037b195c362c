"""The index cache of RecordDataset (pyfacex.data.record_index): the fast header gather against the
one-record reader, the cache's stamp, where it is written, and what pickling carries."""
from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest
import torch

from pyfacex.data import record_index
from pyfacex.data.record_dataset import RecordDataset
from pyfacex.data.record_index import cache_paths, header_labels
from pyfacex.data.record_writer import write_record_dataset
from pyfacex.data.recordio import IRHeader, RecordIOError, RecordReader, RecordWriter, leading_labels, pack_record

MAGIC_FLOAT = struct.unpack("<f", b"\x0a\x23\xd7\xce")[0]  # a float label whose bytes are the magic


def _write(root, labels, videos=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (len(labels), 3, 4, 4), dtype=torch.uint8, generator=gen)
    write_record_dataset(root, images, torch.tensor(labels), videos=videos, encoding="png", overwrite=True)
    return root


def _cache(root):
    return root / "train.index.npy", root / "train.index.json"


@pytest.fixture(autouse=True)
def _private_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


def test_header_gather_equals_the_one_record_reader(tmp_path):
    """Flag 0, 1, 2 and 5 records, two whose header holds the magic (split at it: the slow path), an
    unaligned offset: the gathered labels equal leading_labels record by record."""
    rows = [(0, 3.0), (1, [2.0]), (2, [1.0, 7.0]), (3, [4.0, 9.0, 1.0, 2.0, 3.0]), (4, [0.0, MAGIC_FLOAT])]
    with RecordWriter(tmp_path / "a.rec", tmp_path / "a.idx") as writer:
        for key, label in rows:
            writer.write(key, pack_record(IRHeader(0, label, key, 0), b"image"))
        writer.write(5, pack_record(IRHeader(0, 6.0, 0xCED7230A, 0), b"image"))  # id's low word: the magic
    offsets = np.array([int(line.split()[1]) for line in (tmp_path / "a.idx").read_text().splitlines()])
    first, second, has_second, fallback = header_labels(tmp_path / "a.rec", offsets)
    reader = RecordReader(tmp_path / "a.rec")
    for position, offset in enumerate(offsets.tolist()):
        expected = leading_labels(reader.read(offset, limit=32), 2)
        if position in fallback.tolist():
            continue
        assert first[position] == expected[0]
        assert has_second[position] == (len(expected) == 2)
        assert second[position] == (expected[1] if len(expected) == 2 else 0.0)
    assert fallback.tolist() == [4, 5]  # only records split at a magic inside their labels go one by one
    _, _, _, fallback = header_labels(tmp_path / "a.rec", offsets + 2)  # unaligned: never a record start
    assert fallback.tolist() == list(range(len(offsets)))



def test_header_gather_maps_each_chunk_apart(tmp_path, monkeypatch):
    """Chunks of 3 records, each mapped from its own page-aligned start: records past several pages, in
    shuffled order, one offset past the end: the same labels as one chunk of all."""
    with RecordWriter(tmp_path / "a.rec", tmp_path / "a.idx") as writer:
        for key in range(11):  # 5000-byte payloads: the records straddle page boundaries
            writer.write(key, pack_record(IRHeader(2, [float(key), key / 4], key, 0), bytes(5000)))
    offsets = np.array([int(line.split()[1]) for line in (tmp_path / "a.idx").read_text().splitlines()])
    order = np.random.default_rng(0).permutation(11)
    offsets = np.append(offsets[order], os.path.getsize(tmp_path / "a.rec") + 8)
    whole = header_labels(tmp_path / "a.rec", offsets)
    monkeypatch.setattr(record_index, "_GATHER_CHUNK", 3)
    chunked = header_labels(tmp_path / "a.rec", offsets)
    for expected, got in zip(whole, chunked):
        np.testing.assert_array_equal(got, expected)
    assert chunked[3].tolist() == [11]  # the offset past the end: left for the one-record reader
    assert chunked[0][:11].tolist() == order.tolist() and chunked[2][:11].all()
    np.testing.assert_array_equal(chunked[1][:11], (order / 4).astype(np.float32))


def test_labels_write_the_cache_and_the_next_open_maps_it(tmp_path):
    root = _write(tmp_path / "ds", [2, 0, 1, 1, 0], videos=[4, 0, 1, 2, 3])
    for path in _cache(root):
        path.unlink(missing_ok=True)  # as a set written by other tools: no cache yet
    first = RecordDataset(root)
    assert not _cache(root)[0].exists()  # nothing is written before the labels are read
    labels, videos = first.labels.clone(), first.videos.clone()
    assert all(path.exists() for path in _cache(root))
    second = RecordDataset(root)
    assert second._cache_path == _cache(root)[0] and isinstance(second.keys, np.memmap)
    assert torch.equal(second.labels, labels) and torch.equal(second.videos, videos)
    assert second.keys.tolist() == first.keys.tolist() and second._offsets.tolist() == first._offsets.tolist()
    assert [second[i][1] for i in range(5)] == labels.tolist()


def test_a_rewritten_set_never_uses_the_old_cache(tmp_path):
    """Same sizes, written within the file-time tick: the stamp's digest still tells them apart."""
    root = _write(tmp_path / "ds", [0, 1, 1, 0])
    assert RecordDataset(root).labels.tolist() == [0, 0, 1, 1]
    old = [path.read_bytes() for path in _cache(root)]
    _write(root, [0, 0, 0, 1], seed=0)  # same image bytes, other labels: same .rec and .idx sizes
    for path, data in zip(_cache(root), old):  # as another tool would leave it: the old cache beside new files
        path.write_bytes(data)
    reopened = RecordDataset(root)
    assert reopened._cache_path is None and reopened.labels.tolist() == [0, 0, 0, 1]
    (root / "property").write_text("3,4,4\n")  # the property file is part of the stamp too
    assert RecordDataset(root)._cache_path is None


def test_a_damaged_cache_is_rebuilt(tmp_path):
    root = _write(tmp_path / "ds", [0, 1, 1])
    RecordDataset(root).labels
    _cache(root)[0].write_bytes(b"not an npy file")
    dataset = RecordDataset(root)
    assert dataset._cache_path is None and dataset.labels.tolist() == [0, 1, 1]
    assert RecordDataset(root)._cache_path == _cache(root)[0]  # written again by the labels above


def test_read_only_data_caches_in_the_user_folder(tmp_path, monkeypatch):
    root = _write(tmp_path / "ds", [1, 0])
    for path in _cache(root):
        path.unlink(missing_ok=True)
    beside, user = cache_paths(root / "train.rec")
    assert user.is_relative_to(tmp_path / "user-cache" / "pyfacex" / "record-index")
    real_open = open

    def refuse_beside(path, *args, **kwargs):  # the data folder is read-only (the tests run as root)
        if str(path).startswith(str(root)) and "w" in (args[0] if args else kwargs.get("mode", "r")):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr("builtins.open", refuse_beside)
        assert RecordDataset(root).labels.tolist() == [0, 1]
    assert not beside.exists() and user.exists()
    assert RecordDataset(root)._cache_path == user


def test_no_writable_place_warns_and_keeps_the_labels_in_memory(tmp_path, monkeypatch):
    root = _write(tmp_path / "ds", [1, 0])
    for path in _cache(root):
        path.unlink(missing_ok=True)
    monkeypatch.setattr("pyfacex.data.record_index._replace", _refuse)
    with pytest.warns(RuntimeWarning, match="no writable place for the index cache"):
        assert RecordDataset(root).labels.tolist() == [0, 1]


def _refuse(path, write):
    raise PermissionError(13, "Permission denied", str(path))


def test_index_cache_false_reads_and_writes_none(tmp_path):
    root = _write(tmp_path / "ds", [1, 0, 1])
    for path in _cache(root):
        path.unlink(missing_ok=True)
    RecordDataset(root).labels  # writes it
    files = sorted(os.listdir(root))
    dataset = RecordDataset(root, index_cache=False)
    assert dataset._cache_path is None and dataset.labels.tolist() == [0, 1, 1]
    for path in _cache(root):
        path.unlink()
    RecordDataset(root, index_cache=False).labels
    assert sorted(os.listdir(root)) == [name for name in files if not name.startswith("train.index")]


def test_pickling_a_mapped_dataset_carries_no_columns(tmp_path):
    root = _write(tmp_path / "ds", list(range(40)))
    RecordDataset(root).labels
    mapped = RecordDataset(root)
    assert mapped._cache_path is not None
    blob = pickle.dumps(mapped)
    assert len(blob) < 40 * 24  # the columns (24 bytes per image) stay in the cache file
    copy = pickle.loads(blob)
    assert copy.keys.tolist() == mapped.keys.tolist() and torch.equal(copy.labels, mapped.labels)
    assert torch.equal(copy[3][0], mapped[3][0])
    _write(root, list(range(39)) + [0])
    with pytest.raises(RecordIOError, match="the files changed after the dataset was opened"):
        pickle.loads(blob)


def test_a_bad_label_raises_from_the_fast_path_naming_the_record(tmp_path):
    with RecordWriter(tmp_path / "train.rec", tmp_path / "train.idx") as writer:
        writer.write(0, pack_record(IRHeader(0, 1.0, 0, 0), b"x"))
        writer.write(1, pack_record(IRHeader(0, 2.5, 1, 0), b"x"))
    (tmp_path / "property").write_text("3,2,2\n")
    with pytest.raises(RecordIOError, match=r"at byte \d+ \(key 1\): class label 2.5 is not an integer"):
        RecordDataset(tmp_path).labels
    assert not _cache(tmp_path)[0].exists()
