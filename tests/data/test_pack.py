"""pack_folder / unpack_record_dataset (and ``pyfacex data pack`` / ``unpack``): round trips, resuming, refusals."""
from __future__ import annotations

import io
import json

import pytest
import torch
from PIL import Image

import pyfacex.data.pack as pack_module
from pyfacex.cli import main
from pyfacex.data import (
    ImageFolderDataset,
    RecordDataset,
    RecordDatasetWriter,
    RecordIOError,
    decode_image,
    encode_jpeg,
    pack_folder,
    unpack_record_dataset,
    write_record_dataset,
)
from pyfacex.data.pack import ProgressLine

SET_FILES = ("train.rec", "train.idx", "property")

# 11 identities (labels 00..10, two digits), one of them empty; the 17 image keys 1..17 reach two digits inside
# identity a04 (keys 7..10): unpadded names would sort "10" before "7" and "10" before "2".
STILLS = [f"a{c:02d}/{i}.jpg" for c, count in enumerate([2, 0, 3, 1, 4, 1, 1, 2, 1, 1, 1]) for i in range(count)]
STILLS_EMPTY = ["a01/"]
# Video folders: an empty identity first, then one video of 2 frames and 11 videos (ids 1..11, v03 with 2 frames).
VIDEOS = ["x/v/1.jpg", "x/v/2.jpg"] + [f"y/v{v:02d}/{f}.jpg" for v in range(11) for f in range(1 + (v == 3))]
VIDEOS_EMPTY = ["w/"]


def jpeg(seed: int, size: int = 8) -> bytes:
    generator = torch.Generator().manual_seed(seed)
    return encode_jpeg(torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=generator))


def make_folder(root, names, empty=()):
    """Image i of ``names`` is jpeg(i); ``empty`` folders are made without images."""
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(jpeg(i))
    for name in empty:
        (root / name).mkdir(parents=True, exist_ok=True)
    return root


def set_files(folder) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in SET_FILES}


def tree(folder) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, and every folder as None."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


def stop_after(k: int):
    """A progress hook that raises KeyboardInterrupt (Ctrl-C) once k items are done, and records its calls."""
    def hook(done, total):
        hook.calls.append((done, total))
        if done == k:
            raise KeyboardInterrupt
    hook.calls = []
    return hook


def recorder():
    def hook(done, total):
        hook.calls.append((done, total))
    hook.calls = []
    return hook


def index_offsets(folder) -> list[int]:
    return [int(line.split("\t")[1]) for line in (folder / "train.idx").read_text().splitlines()]


# ---------------------------------------------------------------- packing


@pytest.mark.parametrize("encoding", ["raw", "jpeg", "png"])
def test_pack_writes_what_write_record_dataset_writes(tmp_path, encoding):
    """Streaming gives the same bytes as the in-memory writer, whose layout test_recordio checks against an
    independent parser of insightface's format."""
    faces = make_folder(tmp_path / "faces", STILLS, STILLS_EMPTY)
    pack_folder(faces, tmp_path / "packed", encoding=encoding, quality=80)
    write_record_dataset(tmp_path / "reference", faces, encoding=encoding, quality=80)
    assert set_files(tmp_path / "packed") == set_files(tmp_path / "reference")
    assert not (tmp_path / "packed" / "pack.json").exists()
    index_cache = ("train.index.json", "train.index.npy")  # written by the writer (pyfacex.data.record_index)
    assert sorted(p.name for p in (tmp_path / "packed").iterdir()) == sorted(SET_FILES + index_cache)


def test_raw_pack_keeps_the_file_bytes_and_the_folder_labels(tmp_path):
    faces = make_folder(tmp_path / "faces", STILLS, STILLS_EMPTY)
    dataset = RecordDataset(pack_folder(faces, tmp_path / "packed"))
    labels = [int(name[1:3]) for name in STILLS]  # a00 -> 0, ..., a10 -> 10 (a01 is empty and keeps label 1)
    assert dataset.labels.tolist() == labels and dataset.num_classes == 11 and dataset.videos is None
    assert [bytes(dataset._header(i)[1]) for i in range(len(dataset))] == [jpeg(i) for i in range(len(STILLS))]
    assert torch.equal(dataset[3][0], decode_image(jpeg(3))) and dataset.image_size == (8, 8)


def test_video_folders_keep_their_video_ids(tmp_path):
    faces = make_folder(tmp_path / "faces", VIDEOS, VIDEOS_EMPTY)
    dataset = RecordDataset(pack_folder(faces, tmp_path / "packed"))
    assert dataset.labels.tolist() == [1, 1] + [2] * 12 and dataset.num_classes == 3
    assert dataset.videos.tolist() == [0, 0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 9, 10, 11]
    assert dataset.label_vector(5).tolist() == [2.0, 4.0]  # y/v03/0.jpg


def test_empty_folders(tmp_path):
    (tmp_path / "none").mkdir()
    dataset = RecordDataset(pack_folder(tmp_path / "none", tmp_path / "a"))
    assert len(dataset) == 0 and dataset.num_classes == 0 and (tmp_path / "a" / "property").read_text() == "0,0,0\n"
    assert tree(unpack_record_dataset(tmp_path / "a", tmp_path / "a-folder")) == {}
    (tmp_path / "identities" / "x").mkdir(parents=True)
    (tmp_path / "identities" / "y").mkdir()
    dataset = RecordDataset(pack_folder(tmp_path / "identities", tmp_path / "b"))
    assert len(dataset) == 0 and dataset.num_classes == 2
    assert tree(unpack_record_dataset(tmp_path / "b", tmp_path / "b-folder")) == {"0": None, "1": None}
    assert set_files(pack_folder(tmp_path / "b-folder", tmp_path / "c")) == set_files(tmp_path / "b")


def test_pack_argument_errors_name_the_argument(tmp_path):
    faces = make_folder(tmp_path / "faces", STILLS[:2])
    with pytest.raises(FileNotFoundError, match="folder: image folder .*missing"):
        pack_folder(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ValueError, match="encoding: expected one of"):
        pack_folder(faces, tmp_path / "out", encoding="webp")
    with pytest.raises(ValueError, match="quality: expected an int in 1..100, got 101"):
        pack_folder(faces, tmp_path / "out", encoding="jpeg", quality=101)
    assert not (tmp_path / "out").exists()
    pack_folder(faces, tmp_path / "out")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        pack_folder(faces, tmp_path / "out")
    (faces / "a00" / "0.jpg").write_bytes(jpeg(99))
    pack_folder(faces, tmp_path / "out", overwrite=True)
    assert bytes(RecordDataset(tmp_path / "out")._header(0)[1]) == jpeg(99)


# ---------------------------------------------------------------- resuming


@pytest.mark.parametrize("names, empty", [(STILLS, STILLS_EMPTY), (VIDEOS, VIDEOS_EMPTY)], ids=["stills", "videos"])
@pytest.mark.parametrize("k", [1, 9])
def test_interrupted_pack_resumes_without_rereading_the_packed_images(tmp_path, names, empty, k):
    faces = make_folder(tmp_path / "faces", names, empty)
    reference = set_files(pack_folder(faces, tmp_path / "reference"))
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        pack_folder(faces, out, progress=stop_after(k))
    assert not (out / "train.rec").exists() and (out / "train.rec.partial").is_file()
    assert json.loads((out / "pack.json").read_text())["images"] == len(names)
    # A file already packed now holds other bytes under the same name: a resume that read it again would store
    # them; one that keeps the packed records stores the original bytes.
    (faces / names[0]).write_bytes(jpeg(1000))
    hook = recorder()
    pack_folder(faces, out, progress=hook)
    assert hook.calls == [(done, len(names)) for done in range(k, len(names) + 1)]
    assert set_files(out) == reference and not (out / "pack.json").exists()


@pytest.mark.parametrize("tail", ["half record, half index line", "index lists a half-written record"])
def test_resume_cuts_half_written_tails(tmp_path, tail):
    """A killed process leaves what its buffers had flushed: the .rec may end inside a record, the .idx inside a
    line, and either may be ahead of the other. The resume keeps the whole records the index lists."""
    faces = make_folder(tmp_path / "faces", STILLS, STILLS_EMPTY)
    reference = pack_folder(faces, tmp_path / "reference")
    rec, lines, offsets = (reference / "train.rec").read_bytes(), (reference / "train.idx").read_text().splitlines(), \
        index_offsets(reference)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        pack_folder(faces, out, progress=stop_after(8))  # records the pack in pack.json
    k = 6  # keys 0..6 (record 0, images 1..6) whole in the files below
    if tail == "half record, half index line":
        (out / "train.rec.partial").write_bytes(rec[:offsets[k + 1] + 13])
        (out / "train.idx.partial").write_text("\n".join(lines[:k + 1]) + "\n" + lines[k + 1][:3])
    else:
        (out / "train.rec.partial").write_bytes(rec[:offsets[k + 1] + 10])
        (out / "train.idx.partial").write_text("\n".join(lines[:k + 2]) + "\n")
    hook = recorder()
    pack_folder(faces, out, progress=hook)
    assert hook.calls[0] == (k, len(STILLS))
    assert set_files(out) == set_files(reference)


def test_resume_of_a_changed_folder_or_settings_is_refused(tmp_path):
    faces = make_folder(tmp_path / "faces", STILLS, STILLS_EMPTY)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        pack_folder(faces, out, progress=stop_after(5))
    (faces / "a10" / "new.jpg").write_bytes(jpeg(50))
    with pytest.raises(ValueError, match=r"partial pack of other input \(images: 17 then, 18 now; listing: "):
        pack_folder(faces, out)
    (faces / "a10" / "new.jpg").unlink()
    with pytest.raises(ValueError, match="encoding: 'raw' then, 'png' now"):
        pack_folder(faces, out, encoding="png")
    (faces / "a00" / "1.jpg").rename(faces / "a00" / "9.jpg")  # same count, another listing
    with pytest.raises(ValueError, match="listing: '[0-9a-f]{64}' then, '[0-9a-f]{64}' now") as error:
        pack_folder(faces, out)
    assert "images" not in str(error.value) and (out / "train.rec.partial").is_file()
    pack_folder(faces, out, overwrite=True)  # starts over with the folder as it is
    assert set_files(out) == set_files(write_record_dataset(tmp_path / "fresh", faces, encoding="raw"))


def test_partial_files_the_writer_cannot_continue_are_named(tmp_path):
    faces = make_folder(tmp_path / "faces", STILLS, STILLS_EMPTY)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        pack_folder(faces, out, progress=stop_after(5))
    (out / "train.idx.partial").write_text("0\t0\n1\tten\n")
    with pytest.raises(RecordIOError, match=r"train.idx.partial line 2: .*\(resume=False, --no-resume, starts over\)"):
        pack_folder(faces, out)
    assert set_files(pack_folder(faces, out, resume=False)) == set_files(pack_folder(faces, tmp_path / "reference"))


@pytest.mark.parametrize("how", ["resume=False", "no pack.json"])
def test_starting_over_ignores_the_partial_files(tmp_path, how):
    faces = make_folder(tmp_path / "faces", STILLS, STILLS_EMPTY)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        pack_folder(faces, out, progress=stop_after(5))
    (faces / STILLS[0]).write_bytes(jpeg(1000))  # packed before: only a pack that starts over stores the new bytes
    if how == "no pack.json":
        (out / "pack.json").unlink()
    hook = recorder()
    pack_folder(faces, out, resume=how != "resume=False", progress=hook)
    assert hook.calls[0] == (0, len(STILLS))
    assert set_files(out) == set_files(write_record_dataset(tmp_path / "fresh", faces, encoding="raw"))


@pytest.mark.parametrize("exact_keys", [None, 5], ids=["ranged", "keys-only"])
def test_writer_resume_continues_both_layouts(tmp_path, exact_keys):
    payloads, labels = [jpeg(i) for i in range(6)], [0, 0, 1, 3, 3, 3]
    options = {} if exact_keys is None else {"_exact_keys": exact_keys}  # 6 images + 1 + 4 classes > 5 keys
    with RecordDatasetWriter(tmp_path / "reference", 6, 4, (8, 8), **options) as writer:
        for payload, label in zip(payloads, labels):
            writer.add(payload, label)
    with pytest.raises(KeyboardInterrupt), RecordDatasetWriter(tmp_path / "out", 6, 4, (8, 8), keep_partial=True,
                                                               **options) as writer:
        for payload, label in zip(payloads[:4], labels):
            writer.add(payload, label)
        raise KeyboardInterrupt
    with RecordDatasetWriter(tmp_path / "out", 6, 4, (8, 8), resume=True, **options) as writer:
        assert writer.added == 4 and writer.ranged == (exact_keys is None)
        for payload, label in zip(payloads[4:], labels[4:]):
            writer.add(payload, label)
    assert set_files(tmp_path / "out") == set_files(tmp_path / "reference")


def test_writer_resume_refuses_partial_files_of_another_set(tmp_path):
    with pytest.raises(KeyboardInterrupt), RecordDatasetWriter(tmp_path, 3, 2, (8, 8), keep_partial=True) as writer:
        writer.add(jpeg(0), 1)
        raise KeyboardInterrupt
    with pytest.raises(RecordIOError, match=r"key range \[5.0, 7.0\] for 4 images of 2 classes"):
        RecordDatasetWriter(tmp_path, 4, 2, (8, 8), resume=True)
    with pytest.raises(RecordIOError, match=r"key 0\): cannot resume: label: .*in \[0, 1\), got 4.0"):
        RecordDatasetWriter(tmp_path, 2, 1, (8, 8), resume=True, _exact_keys=1)  # keys-only: record 0 is no image
    (tmp_path / "train.idx.partial").write_text("0\t0\n2\t32\n")
    with pytest.raises(RecordIOError, match="keys are not 0, 1, 2"):
        RecordDatasetWriter(tmp_path, 3, 2, (8, 8), resume=True)


def test_writer_without_keep_partial_still_deletes_its_partial_files(tmp_path):
    with pytest.raises(KeyboardInterrupt), RecordDatasetWriter(tmp_path, 3, 2, (8, 8)) as writer:
        writer.add(jpeg(0), 0)
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- unpacking


@pytest.mark.parametrize("names, empty", [(STILLS, STILLS_EMPTY), (VIDEOS, VIDEOS_EMPTY)], ids=["stills", "videos"])
def test_pack_unpack_pack_gives_the_same_files(tmp_path, names, empty):
    faces = make_folder(tmp_path / "faces", names, empty)
    packed = pack_folder(faces, tmp_path / "packed")
    unpacked = unpack_record_dataset(packed, tmp_path / "unpacked")
    assert set_files(pack_folder(unpacked, tmp_path / "again")) == set_files(packed)
    folder = ImageFolderDataset(unpacked)
    assert folder.labels.tolist() == RecordDataset(packed).labels.tolist()
    assert [p.read_bytes() for p in folder.samples] == [jpeg(i) for i in range(len(names))]
    assert not (tmp_path / "unpacked.partial").exists() and not (unpacked / ".unpack.json").exists()


def test_unpack_layout_is_zero_padded_numbers(tmp_path):
    packed = pack_folder(make_folder(tmp_path / "faces", VIDEOS, VIDEOS_EMPTY), tmp_path / "packed")
    files = tree(unpack_record_dataset(packed, tmp_path / "unpacked"))
    assert sorted(name for name, data in files.items() if data is None and "/" not in name) == ["0", "1", "2"]
    assert files["1/00/01.jpg"] == jpeg(0) and files["1/00/02.jpg"] == jpeg(1)   # label 1, video 0, keys 1 and 2
    assert files["2/11/14.jpg"] == jpeg(13) and files["0"] is None


def test_unpack_suffixes_follow_the_image_bytes(tmp_path):
    image = torch.randint(0, 256, (8, 8, 3), dtype=torch.uint8).numpy()
    encoded = {}
    for suffix, fmt in [("jpg", "JPEG"), ("png", "PNG"), ("bmp", "BMP"), ("webp", "WEBP"), ("tif", "TIFF")]:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format=fmt)
        encoded[suffix] = buffer.getvalue()
    faces = tmp_path / "faces" / "only"
    faces.mkdir(parents=True)
    for i, (suffix, data) in enumerate(encoded.items()):
        (faces / f"{i}.{suffix}").write_bytes(data)
    files = tree(unpack_record_dataset(pack_folder(faces.parent, tmp_path / "packed"), tmp_path / "unpacked"))
    assert files == {"0": None, **{f"0/{i + 1}.{suffix}": data for i, (suffix, data) in enumerate(encoded.items())}}


def test_unpack_refuses_bytes_no_image_folder_can_hold(tmp_path):
    write_record_dataset(tmp_path / "packed", [jpeg(0), b"GIF89a not really"], [0, 0], encoding="raw")
    with pytest.raises(ValueError, match=r"\(key 2\): the image bytes are not JPEG, PNG, BMP, WebP or TIFF "
                                         r"\(they begin with 47 49 46"):
        unpack_record_dataset(tmp_path / "packed", tmp_path / "unpacked")


def test_interrupted_unpack_continues_and_rewrites_a_cut_file(tmp_path):
    packed = pack_folder(make_folder(tmp_path / "faces", STILLS, STILLS_EMPTY), tmp_path / "packed")
    reference = tree(unpack_record_dataset(packed, tmp_path / "reference"))
    out, partial = tmp_path / "unpacked", tmp_path / "unpacked.partial"
    with pytest.raises(KeyboardInterrupt):
        unpack_record_dataset(packed, out, progress=stop_after(7))
    assert not out.exists() and (partial / "04" / "07.jpg").is_file() and not (partial / "04" / "08.jpg").exists()
    (partial / "04" / "07.jpg").write_bytes(jpeg(6)[:20])  # key 7 is image 6; a kill in the middle of writing it
    hook = recorder()
    unpack_record_dataset(packed, out, progress=hook)
    assert tree(out) == reference and not partial.exists()
    assert hook.calls == [(done, len(STILLS)) for done in range(len(STILLS) + 1)]


def test_unpack_refusals_and_overwrite(tmp_path):
    faces = make_folder(tmp_path / "faces", STILLS, STILLS_EMPTY)
    packed = pack_folder(faces, tmp_path / "packed")
    out = unpack_record_dataset(packed, tmp_path / "unpacked")
    with pytest.raises(FileExistsError, match="out_folder: .*unpacked exists"):
        unpack_record_dataset(packed, out)
    (out / "04" / "stale.jpg").write_bytes(jpeg(70))
    unpack_record_dataset(packed, out, overwrite=True)
    assert not (out / "04" / "stale.jpg").exists()
    assert tree(out) == tree(unpack_record_dataset(packed, tmp_path / "again"))
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds 'notes.txt', which unpack does not write"):
        unpack_record_dataset(packed, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    # An unfinished unpack of another set is not mixed with this one.
    other = pack_folder(make_folder(tmp_path / "other", STILLS[:3]), tmp_path / "other-packed")
    with pytest.raises(KeyboardInterrupt):
        unpack_record_dataset(other, tmp_path / "mixed", progress=stop_after(2))
    with pytest.raises(ValueError, match="holds an unfinished unpack of another set .*images: 3 then, 17 now"):
        unpack_record_dataset(packed, tmp_path / "mixed")
    unpack_record_dataset(packed, tmp_path / "mixed", overwrite=True)
    assert tree(tmp_path / "mixed") == tree(tmp_path / "again")


# ---------------------------------------------------------------- progress and the command line


def test_progress_line_rate_and_eta_count_this_run_only(capsys):
    times = iter([0.0, 1.0, 5.0, 6.0, 100.0])
    line = ProgressLine("pack", every=5.0, clock=lambda: next(times))
    for done in (20, 30, 70, 80, 1000):  # 20 found by a resume, then 10 img/s
        line(done, 1000)
    assert capsys.readouterr().err.splitlines() == [
        "pack: 70/1000 images (7 %), 10 img/s, ETA 0:01:33",   # (1000 - 70) / 10 s
        "pack: 1000/1000 images (100 %), 10 img/s, ETA 0:00:00",  # at the end whatever the interval
    ]
    hours = ProgressLine("unpack", every=0.0, clock=iter([0.0, 10.0]).__next__)
    hours(0, 100_000)
    hours(10, 100_000)
    assert capsys.readouterr().err == "unpack: 10/100000 images (0 %), 1 img/s, ETA 27:46:30\n"


def test_cli_pack_and_unpack(tmp_path, capsys):
    faces = make_folder(tmp_path / "faces", VIDEOS, VIDEOS_EMPTY)
    assert main(["data", "pack", str(faces), "--out", str(tmp_path / "packed"), "--encoding", "jpeg",
                 "--quality", "70"]) == 0
    captured = capsys.readouterr()
    assert f"packed 14 images of 3 identities into {tmp_path / 'packed'}" in captured.out
    assert captured.err.splitlines()[-1].startswith("pack: 14/14 images (100 %), ")
    write_record_dataset(tmp_path / "reference", faces, encoding="jpeg", quality=70)
    assert set_files(tmp_path / "packed") == set_files(tmp_path / "reference")
    assert main(["data", "unpack", str(tmp_path / "packed"), "--out", str(tmp_path / "unpacked")]) == 0
    assert tree(tmp_path / "unpacked") == tree(unpack_record_dataset(tmp_path / "packed", tmp_path / "python"))
    assert main(["data", "unpack", str(tmp_path / "packed"), "--out", str(tmp_path / "unpacked")]) == 2
    assert "pyfacex data: error: out_folder: " in capsys.readouterr().err


def test_cli_interrupted_pack_says_how_to_continue(tmp_path, capsys, monkeypatch):
    faces = make_folder(tmp_path / "faces", STILLS, STILLS_EMPTY)
    argv = ["data", "pack", str(faces), "--out", str(tmp_path / "packed")]
    monkeypatch.setattr(pack_module, "ProgressLine", lambda what: stop_after(4))
    assert main(argv) == 130
    assert "interrupted; run the same command again" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(argv) == 0
    assert set_files(tmp_path / "packed") == set_files(pack_folder(faces, tmp_path / "reference"))
    assert main(argv + ["--no-resume"]) == 2  # finished: only --overwrite replaces it
    assert "overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--quality", "80"], "pyfacex data: error: --quality: applies to --encoding jpeg, got --encoding raw"),
    (["--encoding", "jpeg", "--quality", "0"], "argument --quality: expected an integer in 1..100, got '0'"),
    (["--encoding", "gif"], "argument --encoding: invalid choice"),
])
def test_cli_pack_bad_arguments(tmp_path, capsys, extra, message):
    faces = make_folder(tmp_path / "faces", STILLS[:2])
    try:
        status = main(["data", "pack", str(faces), "--out", str(tmp_path / "out")] + extra)
    except SystemExit as exit_info:
        status = exit_info.code
    assert status == 2 and message in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_cli_pack_missing_folder(tmp_path, capsys):
    assert main(["data", "pack", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "pyfacex data: error: folder: image folder" in capsys.readouterr().err
