"""ImageFolderDataset: labels and order from sorted names, extension filter, video folders, errors."""
from __future__ import annotations

import pytest
import torch

from pyfacex.data.codec import DecodeError, encode_png
from pyfacex.data.folder import ImageFolderDataset


def image(value: int) -> torch.Tensor:
    return torch.full((3, 4, 5), value, dtype=torch.uint8)


def make_tree(root, files: dict[str, int]):
    for name, value in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_png(image(value)))


def test_labels_and_order_follow_sorted_names(tmp_path):
    # created out of order; "10" sorts before "9" (names, not numbers)
    make_tree(tmp_path, {"9/b.png": 1, "9/a.PNG": 2, "10/z.png": 3, "alice/x.jpg.png": 4, "alice/y.png": 5})
    dataset = ImageFolderDataset(tmp_path)
    assert dataset.classes == ["10", "9", "alice"] and dataset.num_classes == 3
    assert [p.relative_to(tmp_path).as_posix() for p in dataset.samples] == [
        "10/z.png", "9/a.PNG", "9/b.png", "alice/x.jpg.png", "alice/y.png"]
    assert dataset.labels.tolist() == [0, 1, 1, 2, 2] and dataset.labels.dtype == torch.int64
    assert [(int(img[0, 0, 0]), label) for img, label in (dataset[i] for i in range(5))] == [
        (3, 0), (2, 1), (1, 1), (4, 2), (5, 2)]


def test_filters_extensions_hidden_entries_and_root_files(tmp_path):
    make_tree(tmp_path, {"a/1.png": 1, "a/.hidden.png": 2, "a/notes.txt": 3, "loose.png": 4,
                         ".cache/1.png": 5, "b/.thumbs/deep.png": 6, "b/2.webp": 7})
    dataset = ImageFolderDataset(tmp_path)
    assert dataset.classes == ["a", "b"] and dataset.videos is None
    assert [p.name for p in dataset.samples] == ["1.png", "2.webp"]
    only_png = ImageFolderDataset(tmp_path, extensions=["png"])
    assert [p.name for p in only_png.samples] == ["1.png"] and only_png.num_classes == 2


def test_transform_and_empty_root(tmp_path):
    make_tree(tmp_path / "x", {"a/1.png": 9})
    dataset = ImageFolderDataset(tmp_path / "x", transform=lambda img: img.float() / 255)
    assert dataset[0][0].dtype == torch.float32
    (tmp_path / "empty").mkdir()
    empty = ImageFolderDataset(tmp_path / "empty")
    assert len(empty) == 0 and empty.labels.shape == (0,) and empty.classes == []


def test_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="root: image folder .*missing"):
        ImageFolderDataset(tmp_path / "missing")
    with pytest.raises(TypeError, match="extensions"):
        ImageFolderDataset(tmp_path, extensions=".png")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DecodeError, match="broken.jpg: cannot decode"):
        ImageFolderDataset(tmp_path)[0]


def test_video_folders_give_video_ids_unique_across_identities(tmp_path):
    make_tree(tmp_path, {"bob/v2/0.png": 1, "bob/v1/1.png": 2, "bob/v1/0.png": 3, "amy/x/0.png": 4,
                         "amy/x/notes.txt": 5, "amy/.hidden/0.png": 6, "bob/v3/.0.png": 7})
    (tmp_path / "cat").mkdir()  # an identity without images keeps its label
    dataset = ImageFolderDataset(tmp_path)
    assert dataset.classes == ["amy", "bob", "cat"]
    assert [p.relative_to(tmp_path).as_posix() for p in dataset.samples] == [
        "amy/x/0.png", "bob/v1/0.png", "bob/v1/1.png", "bob/v2/0.png"]
    assert dataset.labels.tolist() == [0, 1, 1, 1]
    # video folders numbered in sorted (identity, video) order; bob/v3 (no visible frame) still counts
    assert dataset.videos.tolist() == [0, 1, 1, 2] and dataset.videos.dtype == torch.int64
    assert [int(dataset[i][0][0, 0, 0]) for i in range(4)] == [4, 3, 2, 1]


@pytest.mark.parametrize("files, message", [
    ({"a/v/0.png": 1, "a/1.png": 2}, r"a holds images \(1.png\) beside its subfolder v"),
    ({"a/v/0.png": 1, "b/1.png": 2}, r"b holds images \(1.png\) beside .*a's video folders"),
    ({"a/v/0.png": 1, "a/v/deeper/0.png": 2}, r"video folder .*v holds a subfolder \(deeper\)"),
])
def test_mixed_depths_are_an_error(tmp_path, files, message):
    make_tree(tmp_path, files)
    with pytest.raises(ValueError, match=message):
        ImageFolderDataset(tmp_path)


def test_skip_returns_the_next_readable_image_with_its_own_label(tmp_path):
    make_tree(tmp_path, {"a/1.png": 1, "a/2.png": 2, "b/1.png": 3})
    (tmp_path / "a" / "2.png").write_bytes(b"broken")
    dataset = ImageFolderDataset(tmp_path, on_error="skip")
    (tmp_path / "b" / "1.png").unlink()  # vanished after listing: an OSError, skipped as well
    with pytest.warns(RuntimeWarning) as warned:
        picture, label = dataset[1]  # index 1 is bad, index 2 gone: wraps round to index 0, its own label
    assert [str(w.message).split(": ", 1)[0].split(" (")[1][:9] for w in warned] == ["1 so far ", "2 so far "]
    assert "a/2.png: cannot decode" in str(warned[0].message) and "b/1.png" in str(warned[1].message)
    assert torch.equal(picture, image(1)) and label == 0 and dataset.skipped == 2
    with pytest.raises(DecodeError, match="a/2.png"):
        ImageFolderDataset(tmp_path)[1]
    with pytest.raises(ValueError, match="on_error: expected one of"):
        ImageFolderDataset(tmp_path, on_error="ignore")
    (tmp_path / "a" / "1.png").write_bytes(b"broken too")
    with pytest.raises(DecodeError, match="no readable image"), pytest.warns(RuntimeWarning):
        dataset[0]


def test_samples_are_a_compact_array_of_paths(tmp_path):
    import pickle

    names = {"a/1.png": 1, "a/é 2.png": 2, "b/x/1.png": 3, "b/y/1.png": 4}
    make_tree(tmp_path / "stills", {k: v for k, v in names.items() if k.startswith("a/")})
    make_tree(tmp_path / "videos", {k: v for k, v in names.items() if k.startswith("b/")})
    stills, videos = ImageFolderDataset(tmp_path / "stills"), ImageFolderDataset(tmp_path / "videos")
    assert list(stills.samples) == [tmp_path / "stills" / "a" / "1.png", tmp_path / "stills" / "a" / "é 2.png"]
    assert stills.samples[-1] == stills.samples[1] and stills.samples[0:2] == list(stills.samples)
    assert list(videos.samples) == [tmp_path / "videos" / "b" / v / "1.png" for v in ("x", "y")]
    with pytest.raises(IndexError):
        stills.samples[2]
    copy = pickle.loads(pickle.dumps(stills))
    assert list(copy.samples) == list(stills.samples) and torch.equal(copy[1][0], image(2))
    assert stills.samples._bytes.nbytes == len("a/1.pnga/é 2.png".encode())  # one buffer, no Path objects
