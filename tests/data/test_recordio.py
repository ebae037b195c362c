"""insightface RecordIO: framing, IRHeader, index, RecordDataset and write_record_dataset."""
from __future__ import annotations

import os
import pickle
import re
import struct

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pyfacex.data.codec import DecodeError, encode_png
from pyfacex.data.record_dataset import RecordDataset
from pyfacex.data.record_writer import RecordDatasetWriter, write_record_dataset
from pyfacex.data.recordio import (
    IRHeader,
    RecordIOError,
    RecordReader,
    RecordWriter,
    frame_record,
    leading_labels,
    pack_record,
    read_index,
    read_index_arrays,
    unpack_record,
)

# Written out here rather than imported: the tests check the module against the format, not itself.
MAGIC_LE = b"\x0a\x23\xd7\xce"  # 0xced7230a, little-endian
MAGIC_FLOAT = struct.unpack("<f", MAGIC_LE)[0]  # a float label whose bytes are the magic


def parse_rec(data: bytes) -> list[tuple[int, bytes]]:
    """An independent struct-level parser: (offset, payload) of every record of a whole .rec file,
    asserting dmlc's framing rules on the way (magic, flag sequence, zero padding, aligned splits)."""
    records, pos = [], 0
    while pos < len(data):
        start, parts = pos, []
        while True:
            magic, lrec = struct.unpack_from("<4sI", data, pos)
            assert magic == MAGIC_LE, f"no magic at byte {pos}"
            cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
            assert cflag in ((0, 1) if not parts else (2, 3)), f"cflag {cflag} at byte {pos}"
            parts.append(data[pos + 8:pos + 8 + length])
            pad = -length % 4
            assert data[pos + 8 + length:pos + 8 + length + pad] == bytes(pad)
            pos += 8 + length + pad
            if cflag in (0, 3):
                break
            assert pad == 0, "a part before the last must be a multiple of 4 bytes"
        records.append((start, MAGIC_LE.join(parts)))
    return records


def images_and_labels(n: int, classes: int, size: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, classes, (n,), generator=gen)
    return images, labels


@pytest.fixture
def packed(tmp_path):
    """10 PNG images (lossless, so pixels compare exactly) of 3 classes, in insightface's layout."""
    images, labels = images_and_labels(10, 3)
    labels[:3] = torch.tensor([0, 1, 2])  # every class present
    write_record_dataset(tmp_path / "ds", images, labels, encoding="png")
    return tmp_path / "ds", images, labels


# ---------------------------------------------------------------- framing


@pytest.mark.parametrize("payload, parts", [
    (b"", 1),
    (b"abc", 1),
    (b"abcd" + MAGIC_LE + b"xy", 2),
    (MAGIC_LE + b"abcd" + MAGIC_LE + MAGIC_LE + b"z", 4),  # at the start, twice in a row
    (b"abcd" + MAGIC_LE, 2),  # at the end: an empty last part
    (b"a" + MAGIC_LE + b"bcd", 1),  # unaligned: dmlc compares aligned words only, no split
])
def test_framing_splits_at_aligned_magic_and_rejoins_exactly(tmp_path, payload, parts):
    framed = frame_record(payload)
    assert len(framed) % 4 == 0
    # One magic per part; aligned magics of the payload are consumed by the splits, unaligned ones stay.
    assert framed.count(MAGIC_LE) == parts + (payload.count(MAGIC_LE) if parts == 1 else 0)
    assert parse_rec(framed) == [(0, payload)]
    (tmp_path / "a.rec").write_bytes(framed)
    assert RecordReader(tmp_path / "a.rec").read(0) == payload


def test_limited_read_is_the_prefix_of_the_full_read(tmp_path):
    payload = MAGIC_LE + b"ab" * 6 + MAGIC_LE + b"tail!"
    (tmp_path / "a.rec").write_bytes(frame_record(payload))
    reader = RecordReader(tmp_path / "a.rec")
    for limit in range(len(payload) + 3):
        assert reader.read(0, limit=limit) == payload[:limit]


def test_irheader_pack_unpack_single_and_multi_float_labels():
    header, image = unpack_record(pack_record(IRHeader(0, 7.0, 3, 4), b"img"))
    assert header == IRHeader(0, 7.0, 3, 4) and bytes(image) == b"img"
    record = pack_record(IRHeader(0, [5.0, 0.25, -2.0], 9, 0), b"jpeg")
    assert struct.unpack_from("<IfQQ", record) == (3, 0.0, 9, 0)  # mxnet's layout: flag = label count
    header, image = unpack_record(record)
    assert header.flag == 3 and header.label.tolist() == [5.0, 0.25, -2.0] and bytes(image) == b"jpeg"
    assert leading_labels(record[:28], 1) == (5.0,) and leading_labels(record[:36], 2) == (5.0, 0.25)
    assert leading_labels(record, 5) == (5.0, 0.25, -2.0)  # fewer when the record holds fewer
    assert leading_labels(pack_record(IRHeader(0, 7.0, 3, 4))[:24], 2) == (7.0,)
    with pytest.raises(RecordIOError, match="x.rec: record of 30 bytes"):
        leading_labels(record[:30], 2, "x.rec")
    with pytest.raises(RecordIOError, match="announces 3 float labels"):
        unpack_record(record[:30], "x.rec at byte 8")


# ---------------------------------------------------------------- writer layout, read by the independent parser


def test_written_files_follow_insightface_layout(packed):
    root, images, labels = packed
    rec = parse_rec((root / "train.rec").read_bytes())
    index = [tuple(map(int, line.split("\t"))) for line in (root / "train.idx").read_text().splitlines()]
    assert [offset for _, offset in index] == [offset for offset, _ in rec]  # idx offsets point at records
    by_key = {key: payload for (key, _), (_, payload) in zip(index, rec)}
    n, classes = len(images), 3
    assert (root / "property").read_text() == f"{classes},8,8\n"

    def header(key):
        flag, label, rid, rid2 = struct.unpack_from("<IfQQ", by_key[key])
        floats = struct.unpack_from(f"<{flag}f", by_key[key], 24)
        return flag, label, rid, rid2, floats, by_key[key][24 + 4 * flag:]

    assert header(0)[0] == 2 and header(0)[4] == (n + 1, n + 1 + classes) and header(0)[5] == b""
    sorted_labels = sorted(labels.tolist())
    for key in range(1, n + 1):
        flag, label, rid, _, _, image = header(key)
        assert (flag, label, rid) == (0, sorted_labels[key - 1], key) and image[:4] == b"\x89PNG"
    for c in range(classes):
        flag, _, rid, _, (start, end), image = header(n + 1 + c)
        assert flag == 2 and rid == n + 1 + c and image == b""
        assert sorted_labels[int(start) - 1:int(end) - 1] == [c] * (labels == c).sum().item()


def test_round_trip_images_labels_and_order(packed):
    root, images, labels = packed
    dataset = RecordDataset(root)
    order = torch.argsort(labels, stable=True)  # grouped by class, input order within a class
    assert len(dataset) == 10 and dataset.num_classes == 3 and dataset.image_size == (8, 8)
    assert torch.equal(dataset.labels, labels[order])
    for i in range(len(dataset)):
        image, label = dataset[i]
        assert torch.equal(image, images[order[i]]) and label == labels[order[i]]
    assert torch.equal(dataset[-1][0], dataset[9][0])
    with pytest.raises(IndexError):
        dataset[10]


def test_payload_with_magic_and_multi_float_labels_round_trip(tmp_path):
    image = encode_png(torch.zeros(3, 4, 4, dtype=torch.uint8))
    # The PNG bytes are padded so that the magic sits at aligned offsets of the record payload.
    payloads = [image, image + bytes(-len(image) % 4) + MAGIC_LE * 2]
    labels = torch.tensor([[1.0, 0.5, MAGIC_FLOAT], [0.0, -3.0, 7.0]])
    write_record_dataset(tmp_path, payloads, labels, encoding="raw")
    dataset = RecordDataset(tmp_path)
    raw = (tmp_path / "train.rec").read_bytes()
    assert any(struct.unpack_from("<I", raw, offset + 4)[0] >> 29 == 1 for offset, _ in parse_rec(raw))
    assert dataset.labels.tolist() == [0, 1]
    assert torch.equal(dataset.label_vector(0), labels[1]) and torch.equal(dataset.label_vector(1), labels[0])
    stored = [bytes(unpack_record(RecordReader(tmp_path / "train.rec").read(int(o)))[1])
              for o in dataset._offsets]
    assert stored == [payloads[1], payloads[0]]
    assert torch.equal(dataset[0][0], torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_header_fields_containing_the_magic_still_give_labels(tmp_path):
    image = encode_png(torch.full((3, 2, 2), 9, dtype=torch.uint8))
    with RecordWriter(tmp_path / "train.rec", tmp_path / "train.idx") as writer:  # no record 0
        writer.write(0, pack_record(IRHeader(0, 1.0, 0xCED7230A, 0), image))  # id's low word is the magic
        writer.write(1, pack_record(IRHeader(0, [0.0, MAGIC_FLOAT], 5, 0), image))
    (tmp_path / "property").write_text("2,2,2\n")
    dataset = RecordDataset(tmp_path / "train.rec")
    assert dataset.labels.tolist() == [1, 0] and [dataset[i][1] for i in range(2)] == [1, 0]


def test_dataset_without_record_zero_enumerates_the_index(tmp_path):
    """insightface's SeqRecBuilder: images from key 0 with flag 0, no header or identity records."""
    images, labels = images_and_labels(4, 2, seed=1)
    with RecordWriter(tmp_path / "train.rec", tmp_path / "train.idx") as writer:
        for key in (0, 3, 1, 2):
            writer.write(key, pack_record(IRHeader(0, float(labels[key]), key, 0), encode_png(images[key])))
    (tmp_path / "property").write_text("2,8,8\n")
    dataset = RecordDataset(tmp_path)
    assert dataset.keys.tolist() == [0, 3, 1, 2]  # index order, as MXFaceDataset
    assert dataset.labels.tolist() == labels[[0, 3, 1, 2]].tolist()
    assert torch.equal(dataset[1][0], images[3])


def test_folder_packed_raw_keeps_file_bytes(tmp_path):
    images, _ = images_and_labels(3, 1)
    for name, image in zip(["b/1.png", "a/1.png", "a/2.png"], images):
        (tmp_path / "faces" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "faces" / name).write_bytes(encode_png(image))
    write_record_dataset(tmp_path / "rec", tmp_path / "faces", encoding="raw")
    dataset = RecordDataset(tmp_path / "rec")
    assert dataset.labels.tolist() == [0, 0, 1] and dataset.num_classes == 2
    assert [torch.equal(dataset[i][0], images[j]) for i, j in enumerate([1, 2, 0])] == [True] * 3
    with pytest.raises(FileExistsError):
        write_record_dataset(tmp_path / "rec", tmp_path / "faces")


def test_jpeg_encoding_is_lossy_but_close(tmp_path):
    images = torch.full((2, 3, 16, 16), 100, dtype=torch.uint8)
    write_record_dataset(tmp_path, images, [0, 1], quality=90)
    image, _ = RecordDataset(tmp_path)[1]
    assert (image.int() - 100).abs().max() <= 2 and (tmp_path / "train.rec").read_bytes().count(b"\xff\xd8") == 2


def test_empty_dataset(tmp_path):
    write_record_dataset(tmp_path, torch.empty(0, 3, 8, 8, dtype=torch.uint8), torch.empty(0))
    dataset = RecordDataset(tmp_path)
    assert len(dataset) == 0 and dataset.labels.shape == (0,) and dataset.num_classes == 0


def test_writer_rejects_bad_labels(tmp_path):
    images, _ = images_and_labels(2, 1)
    with pytest.raises(ValueError, match="labels: class label 1.5 of image 1"):
        write_record_dataset(tmp_path, images, [0, 1.5])
    with pytest.raises(ValueError, match="labels: expected"):
        write_record_dataset(tmp_path, images, [0])
    with pytest.raises(ValueError, match="encoding='raw'"):
        write_record_dataset(tmp_path, images, [0, 0], encoding="raw")
    assert not (tmp_path / "train.rec").exists()


# ---------------------------------------------------------------- workers


def test_dataloader_two_workers_equals_direct_indexing(packed):
    dataset = RecordDataset(packed[0])
    dataset[0]  # opens the file in this process: the workers must not reuse that descriptor
    assert dataset._reader._fd is not None
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy._reader._fd is None and torch.equal(copy[2][0], dataset[2][0])
    loader = DataLoader(dataset, batch_size=3, num_workers=2, multiprocessing_context="fork")
    images, labels = zip(*loader)
    assert torch.equal(torch.cat(images), torch.stack([dataset[i][0] for i in range(len(dataset))]))
    assert torch.equal(torch.cat(labels), dataset.labels)


# ---------------------------------------------------------------- bad input


def _offset(root, key):
    return read_index(root / "train.idx")[key]


def _corrupt(path, offset, data):
    raw = bytearray(path.read_bytes())
    raw[offset:offset + len(data)] = data
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("missing", ["train.rec", "train.idx", "property"])
def test_missing_file_is_named(packed, missing):
    (packed[0] / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing):
        RecordDataset(packed[0])


def test_wrong_magic_names_file_and_offset(packed):
    root = packed[0]
    offset = _offset(root, 2)
    _corrupt(root / "train.rec", offset, b"\0\0\0\0")
    with pytest.raises(RecordIOError, match=rf"train.rec at byte {offset}: wrong magic 0x00000000"):
        RecordDataset(root)[1]


def test_truncated_record_is_reported(packed):
    root = packed[0]
    offset = _offset(root, 10)
    (root / "train.rec").write_bytes((root / "train.rec").read_bytes()[:offset + 20])
    with pytest.raises(RecordIOError, match=rf"at byte {offset}: record part of \d+ bytes runs past the end"):
        RecordDataset(root)[9]


def test_index_past_the_end_names_the_offset(packed):
    root = packed[0]
    size = (root / "train.rec").stat().st_size
    lines = (root / "train.idx").read_text().replace(f"3\t{_offset(root, 3)}\n", f"3\t{size + 100}\n")
    (root / "train.idx").write_text(lines)
    with pytest.raises(RecordIOError, match=rf"at byte {size + 100}: offset is past the end"):
        RecordDataset(root)[2]


def test_index_pointing_into_a_record(packed):
    root = packed[0]
    lines = (root / "train.idx").read_text().replace(f"3\t{_offset(root, 3)}\n", f"3\t{_offset(root, 3) + 4}\n")
    (root / "train.idx").write_text(lines)
    with pytest.raises(RecordIOError, match="wrong magic"):
        RecordDataset(root)[2]


def test_bad_index_line_is_named(packed):
    root = packed[0]
    (root / "train.idx").write_text((root / "train.idx").read_text() + "11\tnot-a-number\n")
    with pytest.raises(RecordIOError, match=r"train.idx line 15: expected 'key<TAB>offset'"):
        RecordDataset(root)


def test_missing_image_key_is_reported(packed):
    root = packed[0]
    lines = (root / "train.idx").read_text().splitlines(keepends=True)
    (root / "train.idx").write_text("".join(line for line in lines if not line.startswith("4\t")))
    with pytest.raises(RecordIOError, match="image key 4 is missing"):
        RecordDataset(root)


def test_undecodable_image_names_file_and_offset(packed):
    root = packed[0]
    offset = _offset(root, 5)
    _corrupt(root / "train.rec", offset + 8 + 24, b"garbage!")  # the PNG signature
    with pytest.raises(DecodeError, match=rf"train.rec at byte {offset} \(key 5\): cannot decode"):
        RecordDataset(root)[4]


def test_label_outside_num_classes_is_an_error_never_a_label(packed):
    root = packed[0]
    (root / "property").write_text("2,8,8\n")  # the data holds class 2
    dataset = RecordDataset(root)
    with pytest.raises(RecordIOError, match=r"class label 2.0 is not an integer in \[0, 2\)"):
        dataset.labels
    with pytest.raises(RecordIOError, match="class label 2.0"):
        dataset[len(dataset) - 1]


def test_skip_returns_the_next_valid_record_and_counts(packed):
    root = packed[0]
    _corrupt(root / "train.rec", _offset(root, 5) + 8 + 24, b"garbage!")
    _corrupt(root / "train.rec", _offset(root, 6), b"\0\0\0\0")
    clean = RecordDataset(root, on_error="raise")
    dataset = RecordDataset(root, on_error="skip")
    with pytest.warns(RuntimeWarning) as warned:
        image, label = dataset[4]  # keys 5 and 6 are bad: key 7 (index 6) comes back
    assert [str(w.message).split(": ", 1)[0] for w in warned] == [
        f"RecordDataset skipped a bad item ({n} so far in process {os.getpid()})" for n in (1, 2)]
    assert "(key 5): cannot decode" in str(warned[0].message) and "wrong magic" in str(warned[1].message)
    assert torch.equal(image, clean[6][0]) and label == clean[6][1] and dataset.skipped == 2
    assert torch.equal(dataset[3][0], clean[3][0]) and dataset.skipped == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="on_error"):
        RecordDataset(".", on_error="ignore")
    with pytest.raises(FileNotFoundError, match="root"):
        RecordDataset("nowhere.txt")


# ---------------------------------------------------------------- video ids (the second float label)


def test_video_ids_round_trip_as_the_second_float_label(tmp_path):
    images, _ = images_and_labels(5, 1)
    labels, videos = torch.tensor([1, 0, 1, 0, 1]), torch.tensor([7, 3, 8, 3, 7])
    write_record_dataset(tmp_path, images, labels, videos=videos, encoding="png")
    dataset = RecordDataset(tmp_path)
    order = torch.argsort(labels, stable=True)
    assert torch.equal(dataset.labels, labels[order])
    assert dataset.videos.dtype == torch.int64 and torch.equal(dataset.videos, videos[order])
    assert dataset.label_vector(0).tolist() == [0.0, 3.0]  # insightface's layout: flag 2, (class, video)
    key = int(dataset.keys[0])
    record = parse_rec((tmp_path / "train.rec").read_bytes())[key][1]
    assert struct.unpack_from("<Iff", record[:4] + record[24:32]) == (2, 0.0, 3.0)
    assert torch.equal(dataset[2][0], images[order[2]]) and dataset[2][1] == 1


def test_video_ids_are_read_from_the_headers_without_the_images(tmp_path):
    write_record_dataset(tmp_path, [b"not an image", b"nor this"], [0, 1], videos=[5, 2 ** 24 - 1], encoding="raw",
                         image_size=(2, 2))
    dataset = RecordDataset(tmp_path)
    assert dataset.videos.tolist() == [5, 2 ** 24 - 1] and dataset.labels.tolist() == [0, 1]
    with pytest.raises(DecodeError):
        dataset[0]


def test_no_video_ids_is_none_and_bad_ones_are_errors(packed, tmp_path):
    assert RecordDataset(packed[0]).videos is None
    image = encode_png(torch.zeros(3, 2, 2, dtype=torch.uint8))
    with RecordWriter(tmp_path / "train.rec", tmp_path / "train.idx") as writer:  # no record 0
        writer.write(0, pack_record(IRHeader(0, [0.0, 4.0], 0, 0), image))
        writer.write(1, pack_record(IRHeader(0, 1.0, 1, 0), image))
        writer.write(2, pack_record(IRHeader(0, [1.0, 0.5, 3.0], 2, 0), image))
    (tmp_path / "property").write_text("2,2,2\n")
    dataset = RecordDataset(tmp_path)
    assert dataset.labels.tolist() == [0, 1, 1]  # the class labels read as ever
    with pytest.raises(RecordIOError, match=r"\(key 1\): no video id .* \(key 0\) has one"):
        dataset.videos
    with RecordWriter(tmp_path / "train.rec", tmp_path / "train.idx") as writer:
        writer.write(0, pack_record(IRHeader(0, [0.0, 4.0], 0, 0), image))
        writer.write(1, pack_record(IRHeader(0, [1.0, 0.5, 3.0], 2, 0), image))
    with pytest.raises(RecordIOError, match=r"\(key 1\): second float label 0.5 is not a video id"):
        RecordDataset(tmp_path).videos


def test_writer_rejects_bad_video_ids(tmp_path):
    images, _ = images_and_labels(2, 1)
    with pytest.raises(ValueError, match=r"video: expected a video id in \[0, 2\^24 = 16777216\) for image 1 .*, "
                                         r"got 16777216"):
        write_record_dataset(tmp_path, images, [0, 0], videos=[0, 2 ** 24])
    with pytest.raises(ValueError, match="video: .* got -1"):
        write_record_dataset(tmp_path, images, [0, 0], videos=[-1, 0])
    with pytest.raises(TypeError, match="videos: expected integer labels"):
        write_record_dataset(tmp_path, images, [0, 0], videos=[0.5, 1.0])
    with pytest.raises(ValueError, match="videos: expected"):
        write_record_dataset(tmp_path, images, [[0, 1.0], [0, 2.0]], videos=[0, 1])
    with pytest.raises(ValueError, match="videos: expected"):
        write_record_dataset(tmp_path, images, [0, 0], videos=[0])
    assert not (tmp_path / "train.rec").exists()


def test_folder_with_video_folders_keeps_its_video_ids(tmp_path):
    images, _ = images_and_labels(4, 1)
    for name, image in zip(["b/v/1.png", "a/x/1.png", "a/y/1.png", "a/y/2.png"], images):
        (tmp_path / "faces" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "faces" / name).write_bytes(encode_png(image))
    write_record_dataset(tmp_path / "rec", tmp_path / "faces", encoding="raw")
    dataset = RecordDataset(tmp_path / "rec")
    assert dataset.labels.tolist() == [0, 0, 0, 1] and dataset.videos.tolist() == [0, 1, 1, 2]
    with pytest.raises(ValueError, match="videos: must be None when images is a folder"):
        write_record_dataset(tmp_path / "rec2", tmp_path / "faces", videos=[0, 0, 0, 0])


# ---------------------------------------------------------------- past 2^24 keys


def test_past_the_float32_key_range_the_writer_drops_the_key_ranges(tmp_path):
    """Keys past 2^24 cannot be stored exactly in record 0's float32 (first, end): such a set is written
    as insightface's SeqRecBuilder writes it (images from key 0, flag 0, no header or identity records),
    which MXFaceDataset and RecordDataset enumerate by the index. The threshold is lowered to test it small."""
    images, labels = images_and_labels(10, 3, seed=2)
    order = torch.argsort(labels, stable=True)
    with RecordDatasetWriter(tmp_path, 10, 3, (8, 8), _exact_keys=13) as writer:  # 10 + 1 + 3 = 14 keys > 13
        assert not writer.ranged
        for i in order.tolist():
            writer.add(encode_png(images[i]), int(labels[i]))
    rec = parse_rec((tmp_path / "train.rec").read_bytes())
    index = [tuple(map(int, line.split("\t"))) for line in (tmp_path / "train.idx").read_text().splitlines()]
    assert [key for key, _ in index] == list(range(10))  # images only, from key 0
    for (key, _), (_, payload) in zip(index, rec):
        flag, label, rid, _ = struct.unpack_from("<IfQQ", payload)
        assert (flag, label, rid) == (0, labels[order[key]].item(), key) and len(payload) > 24
    dataset = RecordDataset(tmp_path)
    assert len(dataset) == 10 and dataset.keys.tolist() == list(range(10))
    assert torch.equal(dataset.labels, labels[order])
    assert all(torch.equal(dataset[i][0], images[order[i]]) for i in range(10))


def test_at_the_float32_key_range_the_writer_keeps_the_key_ranges(tmp_path):
    images, labels = images_and_labels(10, 3, seed=2)
    with RecordDatasetWriter(tmp_path, 10, 3, (8, 8), _exact_keys=14) as writer:  # exactly 14 keys: ranged
        assert writer.ranged
        for i in torch.argsort(labels, stable=True).tolist():
            writer.add(encode_png(images[i]), int(labels[i]))
    assert len((tmp_path / "train.idx").read_text().splitlines()) == 14
    assert RecordDataset(tmp_path).keys.tolist() == list(range(1, 11))


def test_writer_counts_and_class_range(tmp_path):
    with pytest.raises(ValueError, match="num_classes: class labels are stored as float32"):
        RecordDatasetWriter(tmp_path, 1, (1 << 24) + 1, (8, 8))
    images, _ = images_and_labels(1, 1)
    writer = RecordDatasetWriter(tmp_path, 1, 1, (8, 8), _exact_keys=2)
    writer.add(encode_png(images[0]), 0)
    with pytest.raises(ValueError, match="more than the 1 images declared"):
        writer.add(encode_png(images[0]), 0)
    writer.close()
    with pytest.raises(ValueError, match="close: 0 images were added, 2 declared"):
        RecordDatasetWriter(tmp_path / "b", 2, 1, (8, 8), _exact_keys=2).close()
    assert not (tmp_path / "b" / "train.rec").exists()


def test_a_header_range_past_the_float32_range_is_an_error_not_a_wrong_set(tmp_path):
    images, _ = images_and_labels(1, 1)
    with RecordWriter(tmp_path / "train.rec", tmp_path / "train.idx") as writer:
        writer.write(0, pack_record(IRHeader(0, [2.0, float((1 << 24) + 2)], 0, 0)))  # rounds to 2^24 + 2
        writer.write(1, pack_record(IRHeader(0, 0.0, 1, 0), encode_png(images[0])))
    (tmp_path / "property").write_text("1,8,8\n")
    with pytest.raises(RecordIOError, match=r"passes 2\^24, where its float32 labels are not exact"):
        RecordDataset(tmp_path)


# ---------------------------------------------------------------- the index as arrays


@pytest.mark.parametrize("text", [
    "0\t0\n5\t40\n2\t88\n",            # insightface's own layout
    "0\t0\n5\t40\n2\t88",              # no newline at the end
    "0 0\n\n5\t40\r\n2   88\n\n",      # blank lines, CRLF, spaces: the line parser's answer
    "",                                # an empty set
])
def test_index_arrays_match_the_line_parser(tmp_path, text):
    path = tmp_path / "train.idx"
    path.write_bytes(text.encode())
    keys, offsets = read_index_arrays(path)
    assert keys.dtype == offsets.dtype == np.int64
    lines = [line.split() for line in text.splitlines() if line.strip()]
    assert keys.tolist() == [int(k) for k, _ in lines] and offsets.tolist() == [int(o) for _, o in lines]
    assert read_index(path) == dict(zip(keys.tolist(), offsets.tolist()))


@pytest.mark.parametrize("text, message", [
    ("0\t0\n1\t-8\n", "line 2: negative offset -8"),
    ("0\t0\n0\t8\n", "line 2: key 0 already appeared"),
    ("0\t0\n1\t8\t9\n", "line 2: expected 'key<TAB>offset'"),
    ("0\t0\n1\t8.5\n", "line 2: expected 'key<TAB>offset'"),
    ("0\t0\n1\t99999999999999999999\n", "line 2: key or offset beyond int64"),
    ("0\t0\n1\t9223372036854775807\n", "line 2: key or offset beyond int64"),
])
def test_index_errors_name_the_line(tmp_path, text, message):
    path = tmp_path / "train.idx"
    path.write_text(text)
    with pytest.raises(RecordIOError, match=re.escape(f"train.idx {message}")):
        read_index_arrays(path)


def test_index_arrays_of_a_large_index(tmp_path):
    """300,000 lines in the order an index may hold them (keys shuffled): the fast parse, exact."""
    rng = np.random.default_rng(0)
    keys = rng.permutation(300_000).astype(np.int64)
    offsets = np.cumsum(rng.integers(24, 5000, keys.size)).astype(np.int64)
    path = tmp_path / "train.idx"
    path.write_text("".join(f"{k}\t{o}\n" for k, o in zip(keys.tolist(), offsets.tolist())))
    read = read_index_arrays(path)
    assert np.array_equal(read.keys, keys) and np.array_equal(read.offsets, offsets)
