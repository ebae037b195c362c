"""FaceEmbedder: embeddings as evaluation computes them (flip-sum, normalised), alignment by landmarks,
similarity, the stored threshold, and clear errors."""
import pytest
import torch
import torch.nn.functional as F

import pyfacex
from pyfacex.align import norm_crop
from pyfacex.data.codec import resize_image
from pyfacex.embed import FaceEmbedder, store_calibration
from pyfacex.train.checkpoint import load_embedder, safe_load


def _by_hand(model_file, faces, flip=True):
    """The flip-sum written out: model((x/255-0.5)/0.5) + model(of the mirror), in float64 for reference."""
    model, _ = load_embedder(model_file)
    x = faces.double() / 255 * 2 - 1
    with torch.no_grad():
        model = model.double()
        out = model(x) + (model(x.flip(-1)) if flip else 0)
    return F.normalize(out, dim=1), out.norm(dim=1)


def test_embeddings_are_evaluations_flip_sum_normalised(model_112, crops):
    _, images = crops
    embedder = FaceEmbedder(model_112, batch_size=4)
    embeddings, norms = embedder.embed(images, return_norms=True)
    expected, expected_norms = _by_hand(model_112, images)
    assert embeddings.shape == (6, 8) and embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings.double(), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(norms.double(), expected_norms, rtol=1e-5, atol=0)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(6), rtol=0, atol=1e-6)
    # the embeddings tell the faces apart (not a collapsed model): the six are not all alike
    assert embedder.similarity(embeddings, embeddings).min() < 0.5
    no_flip = FaceEmbedder(model_112, flip=False).embed(images)
    torch.testing.assert_close(no_flip.double(), _by_hand(model_112, images, flip=False)[0], rtol=0, atol=1e-5)
    assert (no_flip - embeddings).abs().max() > 1e-3


def test_float_images_in_0_1_give_the_uint8_embeddings(model_112, crops):
    _, images = crops
    embedder = FaceEmbedder(model_112)
    assert torch.equal(embedder.embed(images.float() / 255), embedder.embed(images))
    with pytest.raises(ValueError, match=r"images: expected floating images in \[0, 1\], got values in \[0, 2"):
        embedder.embed(images.float())
    with pytest.raises(TypeError, match="images: expected uint8 or floating"):
        embedder.embed(images.to(torch.int32))


def test_crops_of_another_size_are_resized(model_32, crops):
    _, images = crops
    embedder = FaceEmbedder(model_32)
    assert embedder.image_size == 32
    expected = _by_hand(model_32, resize_image(images, (32, 32)))[0]
    torch.testing.assert_close(embedder.embed(images).double(), expected, rtol=0, atol=1e-5)


def test_landmarks_align_the_faces(model_112, photos):
    embedder = FaceEmbedder(model_112)
    by_five = embedder.embed(photos.images, photos.landmarks5)
    by_68 = embedder.embed(photos.images, photos.landmarks68)           # five_points of the 68
    assert torch.equal(by_five, by_68)
    aligned = torch.stack([norm_crop(image, points, 112) for image, points in zip(photos.images, photos.landmarks5)])
    torch.testing.assert_close(by_five, embedder.embed(aligned), rtol=0, atol=1e-6)
    # the loose photo itself, only resized, is another picture altogether
    assert (embedder.embed(photos.images) - by_five).abs().max() > 1e-2
    single = embedder.embed(photos.images[2], photos.landmarks5[2])
    assert single.shape == (8,)
    torch.testing.assert_close(single, by_five[2], rtol=0, atol=1e-6)


def test_photos_of_different_sizes_follow_their_landmarks(model_112, photos):
    # the same photo on a larger black canvas, its landmarks shifted: the same aligned face
    canvas = torch.zeros(3, 150, 141, dtype=torch.uint8)
    canvas[:, 10:138, 7:135] = photos.images[1]
    shifted = photos.landmarks5[1] + torch.tensor([7.0, 10.0], dtype=photos.landmarks5.dtype)
    embedder = FaceEmbedder(model_112)
    out = embedder.embed([photos.images[0], canvas], torch.stack([photos.landmarks5[0], shifted]))
    expected = embedder.embed(photos.images[:2], photos.landmarks5[:2])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match=r"landmarks: expected 2 sets of 5 or 68 points"):
        embedder.embed([photos.images[0], canvas], photos.landmarks5[:3])


def test_a_model_of_another_side_aligns_at_112_then_resizes(model_32, photos):
    embedder = FaceEmbedder(model_32)
    faces = resize_image(torch.stack([norm_crop(i, p, 112) for i, p in zip(photos.images, photos.landmarks5)]),
                         (32, 32))
    torch.testing.assert_close(embedder.embed(photos.images, photos.landmarks5).double(),
                               _by_hand(model_32, faces)[0], rtol=0, atol=1e-5)


def test_empty_batches(model_112):
    embedder = FaceEmbedder(model_112)
    embeddings, norms = embedder.embed(torch.zeros(0, 3, 112, 112, dtype=torch.uint8), return_norms=True)
    assert embeddings.shape == (0, 8) and norms.shape == (0,)
    assert embedder.embed([], torch.zeros(0, 5, 2)).shape == (0, 8)


def test_similarity_shapes_and_values():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 5, generator=generator), torch.randn(4, 5, generator=generator)
    matrix = FaceEmbedder.similarity(a, b)
    torch.testing.assert_close(matrix, F.normalize(a, dim=1) @ F.normalize(b, dim=1).T)
    assert FaceEmbedder.similarity(a[0], b).shape == (4,)
    assert FaceEmbedder.similarity(a, b[1]).shape == (3,)
    scalar = FaceEmbedder.similarity(a[0], 7 * a[0])           # raw features: normalised here
    assert scalar.shape == () and abs(scalar.item() - 1) < 1e-6
    with pytest.raises(ValueError, match="b: expected embeddings of a's size 5, got 4"):
        FaceEmbedder.similarity(a, torch.randn(2, 4))


def test_the_stored_threshold_decides(model_112, tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(model_112.read_bytes())
    embedder = FaceEmbedder(path)
    assert embedder.threshold is None and embedder.flip
    with pytest.raises(ValueError, match=r"threshold: .* stores none; run `pyfacex eval .* --calibrate 1e-4`"):
        embedder.decide(torch.tensor([0.5]))
    store_calibration(path, {"threshold": 0.4, "far": 1e-3, "flip": False, "protocol": "x"})
    calibrated = FaceEmbedder(path)
    assert calibrated.threshold == 0.4 and calibrated.flip is False     # embeds as the threshold was measured
    assert calibrated.decide(torch.tensor([0.39, 0.4, 0.9])).tolist() == [False, True, True]
    assert FaceEmbedder(path, flip=True).flip is True
    assert "threshold=0.4" in repr(calibrated)


def test_errors_and_the_package_export(model_112, tmp_path):
    assert pyfacex.FaceEmbedder is FaceEmbedder and "FaceEmbedder" in pyfacex.__all__
    with pytest.raises(FileNotFoundError, match="model_file: .*missing.pt does not exist"):
        FaceEmbedder(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="model_file: .*junk.pt is not a pyfacex model file"):
        FaceEmbedder(tmp_path / "junk.pt")
    document = safe_load(model_112)
    document["channel_order"] = "BGR"
    torch.save(document, tmp_path / "bgr.pt")
    with pytest.raises(ValueError, match="reads BGR images"):
        FaceEmbedder(tmp_path / "bgr.pt")
    with pytest.raises(ValueError, match="device: expected auto, cpu"):
        FaceEmbedder(model_112, device="gpu0")
