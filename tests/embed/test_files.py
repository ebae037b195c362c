"""embed_files: files decoded (EXIF-oriented), aligned and embedded in DataLoader workers, bad files
named or skipped, and the .npz they are saved to."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from pyfacex.data.codec import decode_image
from pyfacex.data.exif import apply_orientation
from pyfacex.embed import BadImageError, FaceEmbedder, ImageList, list_images, load_embeddings, save_embeddings


def test_a_folder_of_crops_equals_the_decoded_tensors(model_112, crops, tmp_path):
    folder, images = crops
    embedder = FaceEmbedder(model_112, batch_size=4)
    listed = list_images(folder)
    result = embedder.embed_files(listed)
    assert result.paths == ["id0/0.png", "id0/1.png", "id1/0.png", "id1/1.png", "id2/0.png", "id2/1.png"]
    embeddings, norms = embedder.embed(images, return_norms=True)      # PNG is lossless: the same pixels
    assert torch.equal(result.embeddings, embeddings) and torch.equal(result.norms, norms)
    assert result.orientation.tolist() == [1] * 6 and result.landmarks is None and result.skipped == []
    with_workers = embedder.embed_files(listed, workers=2)
    assert torch.equal(with_workers.embeddings, result.embeddings) and with_workers.paths == result.paths

    saved = load_embeddings(save_embeddings(tmp_path / "feats.npz", result))
    assert saved.paths == result.paths and torch.equal(saved.embeddings, result.embeddings)
    assert torch.equal(saved.norms, result.norms) and saved.landmarks is None
    assert (saved.model, saved.image_size, saved.flip, saved.exif_applied) == ("m112.pt", 112, True, True)
    with np.load(tmp_path / "feats.npz", allow_pickle=False) as raw:     # plain arrays, no pickle
        assert raw["embeddings"].dtype == np.float32 and raw["paths"].dtype.kind == "U"
        assert not bool(raw["aligned"]) and "landmarks" not in raw


def test_bad_files_are_named_or_skipped(model_112, photos, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    names = [photos.names[0], "broken.jpg", "absent.png", photos.names[1], photos.names[2]]
    files = [photos.folder / names[0], tmp_path / names[1], tmp_path / names[2], photos.folder / names[3],
             photos.folder / names[4]]
    points = photos.landmarks5[[0, 0, 0, 1, 2]].clone()
    points[4] = 10.0                                          # coincident points: no similarity to fit
    images = ImageList(names, files, points)
    embedder = FaceEmbedder(model_112, batch_size=2)
    with pytest.raises(BadImageError, match=r"broken.jpg: cannot decode image .*--skip-bad"):
        embedder.embed_files(images)
    result = embedder.embed_files(images, skip_bad=True, workers=2)
    assert result.paths == [photos.names[0], photos.names[1]]
    reasons = dict(result.skipped)
    assert list(reasons) == ["broken.jpg", "absent.png", photos.names[2]]
    assert "cannot decode image" in reasons["broken.jpg"] and str(tmp_path / "broken.jpg") in reasons["broken.jpg"]
    assert "absent.png: cannot read the file (No such file or directory)" in reasons["absent.png"]
    assert "cannot crop the face" in reasons[photos.names[2]] and "coincident" in reasons[photos.names[2]]
    expected = embedder.embed(photos.images[:2], photos.landmarks5[:2])
    torch.testing.assert_close(result.embeddings, expected, rtol=0, atol=1e-6)
    assert torch.equal(result.landmarks, photos.landmarks5[:2].float())


def test_an_image_without_landmarks_is_skipped_or_named(model_112, photos):
    points = photos.landmarks5[:2].clone()
    points[1] = float("nan")                          # what list_images(allow_missing=True) gives
    images = ImageList(photos.names[:2], [photos.folder / n for n in photos.names[:2]], points)
    embedder = FaceEmbedder(model_112)
    with pytest.raises(BadImageError, match="person1.png: no landmarks given for it"):
        embedder.embed_files(images)
    assert embedder.embed_files(images, skip_bad=True).paths == [photos.names[0]]


def _with_orientation(stored: torch.Tensor, orientation: int, fmt: str) -> bytes:
    image = Image.fromarray(stored.permute(1, 2, 0).numpy())
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_exif_orientation_puts_the_landmarks_on_the_face(model_112, photos, tmp_path, fmt):
    # a phone's photo: pixels stored rotated, tag 6 ("rotate 90° clockwise to show"); the landmarks
    # come from a detector that saw the upright photo
    upright = torch.cat([photos.images[3], photos.images[3][:, :32]], 1)     # 160×128: the shape turns too
    stored = apply_orientation(upright, 8)                                    # 8 undoes 6
    path = tmp_path / f"phone.{fmt.lower()}"
    path.write_bytes(_with_orientation(stored, 6, fmt))
    assert tuple(decode_image(path.read_bytes()).shape) == (3, 128, 160)
    images = ImageList(["phone"], [path], photos.landmarks5[3:4])
    embedder = FaceEmbedder(model_112)
    expected = embedder.embed(upright, photos.landmarks5[3])
    oriented = embedder.embed_files(images)
    ignored = embedder.embed_files(images, exif=False)
    assert oriented.orientation.tolist() == ignored.orientation.tolist() == [6]
    assert oriented.exif_applied and not ignored.exif_applied
    # the decoded file turned upright by tag 6, then aligned: exactly what embed_files gives
    turned = apply_orientation(decode_image(path.read_bytes()), 6)
    torch.testing.assert_close(oriented.embeddings[0], embedder.embed(turned, photos.landmarks5[3]), rtol=0,
                               atol=1e-6)
    if fmt == "PNG":                                                          # lossless: the upright photo
        torch.testing.assert_close(oriented.embeddings[0], expected, rtol=0, atol=1e-6)
    cosine = float(oriented.embeddings[0] @ expected)
    assert float(ignored.embeddings[0] @ expected) < cosine - 0.1         # the landmarks miss the face


def test_empty_input(model_112, tmp_path):
    result = FaceEmbedder(model_112).embed_files(list_images(tmp_path))
    assert result.embeddings.shape == (0, 8) and result.paths == []
    saved = load_embeddings(save_embeddings(tmp_path / "empty.npz", result))
    assert saved.embeddings.shape == (0, 8) and saved.paths == []
