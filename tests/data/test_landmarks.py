"""Landmark sidecars (CSV: path, 10 numbers) and align_face: five points as norm_crop, IJB-A's three
points, sizes without a template, and image folders aligned by a sidecar."""
import math

import pytest
import torch

from pyfacex.align import ARCFACE_TEMPLATE, norm_crop, transform_points
from pyfacex.data import ImageFolderDataset, LandmarkTable, align_face, read_landmarks_csv
from pyfacex.data.codec import encode_png, resize_image


def similarity(scale, angle, tx, ty):
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return torch.tensor([[c, -s, tx], [s, c, ty]], dtype=torch.float64)


def photo(height=150, width=170, seed=0):
    """A smooth random uint8 photo (3, H, W): bilinear resampling of it is well behaved."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 12, 14, generator=generator) * 255
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic",
                                           align_corners=False)[0].clamp(0, 255).round().to(torch.uint8)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_read_landmarks_csv_header_relative_and_absolute_paths(tmp_path):
    absolute = tmp_path / "elsewhere" / "b.png"
    sidecar = write(tmp_path / "set" / "landmarks.csv",
                    "path,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5\n"
                    "lfw/A/A_0001.jpg, 1,2,3,4,5,6,7,8,9,10\n\n"
                    f"{absolute},0.5,0,0,0,0,0,0,0,0,-1.25\n")
    table = read_landmarks_csv(sidecar)
    assert len(table) == 2 and table.lines == [2, 4]
    assert table.points.shape == (2, 5, 2) and table.points[0, 4].tolist() == [9.0, 10.0]
    assert table.paths == [tmp_path / "set" / "lfw/A/A_0001.jpg", absolute]
    # lookups compare normalised absolute paths; rows come back in the order asked
    got = table.points_of([absolute, tmp_path / "set" / "lfw" / "." / "A" / "A_0001.jpg"])
    assert got[0, 0].tolist() == [0.5, 0.0] and got[1, 0].tolist() == [1.0, 2.0]
    assert table.find(tmp_path / "set" / "other.jpg") is None
    with pytest.raises(KeyError, match=r"landmarks\.csv has no row for the image .*missing\.jpg"):
        table.points_of([absolute, tmp_path / "missing.jpg"])
    # relative paths from another root; an empty file is an empty table
    assert read_landmarks_csv(sidecar, root=tmp_path).paths[0] == tmp_path / "lfw/A/A_0001.jpg"
    assert len(read_landmarks_csv(write(tmp_path / "empty.csv", ""))) == 0
    assert read_landmarks_csv(write(tmp_path / "empty.csv", "")).points_of([]).shape == (0, 5, 2)


@pytest.mark.parametrize("text, message", [
    ("a.jpg,1,2,3\n", r"bad\.csv:1: expected 'path,x1,y1"),
    ("a.jpg,1,2,3,4,5,6,7,8,9,10\nb.jpg,1,2,3,4,5,6,7,8,9,x\n", r"bad\.csv:2: expected 'path,x1,y1"),
    ("a.jpg,1,2,3,4,5,6,7,8,9,10\nb.jpg,1,2,3,4,5,6,7,8,9,inf\n", r"bad\.csv:2: expected finite"),
    ("a.jpg,1,2,3,4,5,6,7,8,9,10\n./a.jpg,1,2,3,4,5,6,7,8,9,10\n", r"bad\.csv:2: the image \./a\.jpg is listed "
                                                                   r"twice \(first on line 1\)"),
    (",1,2,3,4,5,6,7,8,9,10\n", r"bad\.csv:1: expected"),
])
def test_read_landmarks_csv_errors_name_the_line(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        read_landmarks_csv(write(tmp_path / "bad.csv", text))


def test_read_landmarks_csv_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="landmarks: .*nope.csv does not exist"):
        read_landmarks_csv(tmp_path / "nope.csv")


def test_align_face_five_points_is_norm_crop_and_other_sizes_resize_the_112_crop():
    image = photo()
    points = transform_points(ARCFACE_TEMPLATE.double(), similarity(1.2, 0.2, 20.0, 5.0)).float()
    assert torch.equal(align_face(image, points), norm_crop(image, points))
    assert torch.equal(align_face(image, points, 224), norm_crop(image, points, 224))
    small = align_face(image, points, 64)      # no ArcFace template for 64: aligned at 112, resized
    assert small.shape == (3, 64, 64) and small.dtype == torch.uint8
    assert torch.equal(small, resize_image(norm_crop(image, points), (64, 64)))
    with pytest.raises(ValueError, match=r"points: expected \(5, 2\) or \(3, 2\)"):
        align_face(image, points[:4])
    with pytest.raises(ValueError, match="size: expected an int >= 1"):
        align_face(image, points, 0)


def test_align_face_three_points_land_on_the_template_eyes_and_nose():
    """Three points that are the template's eyes and nose under a similarity give the crop the five
    points of that similarity give: the map is fixed by any three of its point pairs."""
    image = photo(seed=1)
    m = similarity(0.8, -0.3, 40.0, 30.0)
    five = transform_points(ARCFACE_TEMPLATE.double(), m).float()
    three = align_face(image, five[:3])
    diff = (three.float() - norm_crop(image, five).float()).abs()
    assert three.shape == (3, 112, 112) and diff.max() <= 1   # the two fits differ in the last bits only
    # and a different nose moves the crop: the third point is used
    moved = five[:3].clone()
    moved[2, 1] += 6
    assert (align_face(image, moved).float() - three.float()).abs().mean() > 2


def test_image_folder_aligned_by_a_sidecar(tmp_path):
    images = {"alice/1.png": photo(seed=2), "alice/2.png": photo(seed=3), "bob/1.png": photo(seed=4)}
    rows = []
    for k, (name, image) in enumerate(images.items()):
        write(tmp_path / "faces" / name, "")
        (tmp_path / "faces" / name).write_bytes(encode_png(image))
        points = transform_points(ARCFACE_TEMPLATE.double(), similarity(1.0 + 0.1 * k, 0.1 * k, 10.0 + k, 7.0))
        rows.append(f"{name}," + ",".join(f"{v:.4f}" for v in points.flatten().tolist()))
    sidecar = write(tmp_path / "faces" / "landmarks.csv", "\n".join(rows) + "\n")
    plain = ImageFolderDataset(tmp_path / "faces")
    aligned = ImageFolderDataset(tmp_path / "faces", landmarks=sidecar, image_size=112)
    table = read_landmarks_csv(sidecar)
    assert aligned.classes == ["alice", "bob"] and aligned.labels.tolist() == [0, 0, 1]
    for i in range(3):
        image, label = aligned[i]
        assert label == plain[i][1] and image.shape == (3, 112, 112)
        assert torch.equal(image, norm_crop(plain[i][0], table.points_of([aligned.samples[i]])[0]))
    # the transform sees the aligned face; a table works as well as its file
    flipped = ImageFolderDataset(tmp_path / "faces", transform=lambda x: x.flip(-1), landmarks=table)
    assert torch.equal(flipped[0][0], aligned[0][0].flip(-1))
    write(tmp_path / "faces" / "carol" / "1.png", "")
    (tmp_path / "faces" / "carol" / "1.png").write_bytes(encode_png(photo(seed=5)))
    with pytest.raises(KeyError, match=r"no row for the image .*carol/1\.png"):
        ImageFolderDataset(tmp_path / "faces", landmarks=sidecar)
    assert isinstance(table, LandmarkTable)


def test_a_first_row_with_one_bad_number_is_an_error_not_a_header(tmp_path):
    with pytest.raises(ValueError, match=r"typo\.csv:1: expected 'path,x1,y1"):
        read_landmarks_csv(write(tmp_path / "typo.csv", "a.jpg,1,2,3,4,5,6,7,8,9,1o\nb.jpg,1,2,3,4,5,6,7,8,9,10\n"))
