"""list_images (folder, list file, CSV with 5 or 68 points) and attach_landmarks (a sidecar)."""
import pytest
import torch

from pyfacex.align import five_points
from pyfacex.data.landmarks import read_landmarks_csv
from pyfacex.embed import attach_landmarks, list_images
from pyfacex.embed.inputs import has_landmarks


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_folder_is_walked_recursively_in_sorted_order(tmp_path):
    for name in ("b/2.JPG", "b/10.png", "a.jpeg", "c/d/e.webp", "notes.txt", ".hidden.jpg", ".cache/x.jpg",
                 "b/.y.png"):
        _touch(tmp_path / name)
    images = list_images(tmp_path)
    assert images.names == ["a.jpeg", "b/10.png", "b/2.JPG", "c/d/e.webp"]
    assert images.files == [tmp_path / n for n in images.names]
    assert images.landmarks is None
    assert len(list_images(tmp_path / "c" / "d" / "..")) == 1      # any folder works, even an empty-ish one
    (tmp_path / "empty").mkdir()
    assert len(list_images(tmp_path / "empty")) == 0


def test_list_file_relative_to_its_folder(tmp_path):
    listing = tmp_path / "sub" / "list.txt"
    listing.parent.mkdir()
    listing.write_text("# my photos\nx/one.jpg\n\n  /abs/two.png  \n")
    images = list_images(listing)
    assert images.names == ["x/one.jpg", "/abs/two.png"]
    assert images.files[0] == tmp_path / "sub" / "x" / "one.jpg"
    assert str(images.files[1]) == "/abs/two.png"
    assert images.landmarks is None


def test_csv_with_five_or_68_points_and_a_header(tmp_path):
    generator = torch.Generator().manual_seed(0)
    points68 = torch.rand(68, 2, generator=generator, dtype=torch.float64) * 100
    points5 = torch.rand(5, 2, generator=generator, dtype=torch.float64) * 100
    csv = tmp_path / "faces.csv"
    csv.write_text("path,x1,y1\n"
                   f"a.jpg,{','.join(repr(v) for v in points5.flatten().tolist())}\n"
                   f"\"b, c.jpg\",{','.join(repr(v) for v in points68.flatten().tolist())}\n")
    images = list_images(csv)
    assert images.names == ["a.jpg", "b, c.jpg"]
    assert images.files[1] == tmp_path / "b, c.jpg"
    assert images.landmarks.shape == (2, 5, 2)
    assert torch.equal(images.landmarks[0], points5)
    assert torch.equal(images.landmarks[1], five_points(points68))
    only_paths = tmp_path / "paths.csv"
    only_paths.write_text("path\na.jpg\nb.jpg\n", encoding="utf-8-sig")     # as a spreadsheet saves it
    assert list_images(only_paths).names == ["a.jpg", "b.jpg"] and list_images(only_paths).landmarks is None


def test_csv_errors_name_file_and_line(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("a.jpg," + ",".join(["1"] * 10) + "\nb.jpg,1,2,3\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 2: expected a path and 10 .* or 136 .* got a path and 3"):
        list_images(csv)
    csv.write_text("a.jpg," + ",".join(["1"] * 9) + ",nan\n")
    with pytest.raises(ValueError, match="line 1: expected finite landmark numbers, got 'nan'"):
        list_images(csv)
    csv.write_text("a.jpg," + ",".join(["1"] * 10) + "\nb.jpg\n")
    with pytest.raises(ValueError, match="'a.jpg' has landmarks and 'b.jpg' has none"):
        list_images(csv)
    mixed = list_images(csv, allow_missing=True)        # --skip-bad: b.jpg is kept, to be skipped
    assert has_landmarks(mixed.landmarks).tolist() == [True, False]
    with pytest.raises(FileNotFoundError, match="INPUT: .*nowhere"):
        list_images(tmp_path / "nowhere")


def test_attach_landmarks_from_a_sidecar(tmp_path):
    folder = tmp_path / "photos"
    for name in ("p0.jpg", "p1.jpg"):
        _touch(folder / name)
    sidecar = tmp_path / "landmarks.csv"
    sidecar.write_text("path,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5\n"
                       "photos/p1.jpg,1,2,3,4,5,6,7,8,9,10\n"
                       "photos/p0.jpg,10,20,30,40,50,60,70,80,90,100\n")
    images = attach_landmarks(list_images(folder), read_landmarks_csv(sidecar))
    assert images.landmarks.dtype == torch.float64
    assert images.landmarks[0, :, 0].tolist() == [10, 30, 50, 70, 90]     # matched by path, not by row order
    assert images.landmarks[1, 4].tolist() == [9, 10]
    _touch(folder / "p2.jpg")
    with pytest.raises(ValueError, match="--landmarks: .*landmarks.csv has no row for 'p2.jpg'"):
        attach_landmarks(list_images(folder), read_landmarks_csv(sidecar), "--landmarks")
    lenient = attach_landmarks(list_images(folder), read_landmarks_csv(sidecar), allow_missing=True)
    assert has_landmarks(lenient.landmarks).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="has landmarks already"):
        attach_landmarks(images, read_landmarks_csv(sidecar))
