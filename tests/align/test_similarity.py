"""Umeyama similarity fits, insightface's estimate_norm, and moving points between photo and crop."""
import math

import pytest
import torch

from pyfacex.align import (
    ARCFACE_TEMPLATE,
    arcface_template,
    estimate_norm,
    estimate_similarity,
    invert_affine,
    transform_points,
)


def similarity(scale, angle, tx, ty):
    """(..., 2, 3) float64 from (...,) parameters."""
    scale, angle, tx, ty = (torch.as_tensor(v, dtype=torch.float64) for v in (scale, angle, tx, ty))
    c, s = scale * torch.cos(angle), scale * torch.sin(angle)
    return torch.stack([torch.stack([c, -s, tx], -1), torch.stack([s, c, ty], -1)], -2)


def random_faces(n, generator, noise=2.0):
    """(n, 5, 2) landmarks: the template under random similarities plus per-point noise."""
    moves = similarity(0.4 + 3 * torch.rand(n, generator=generator, dtype=torch.float64),
                       (torch.rand(n, generator=generator, dtype=torch.float64) - 0.5) * 2 * math.pi,
                       500 * torch.rand(n, generator=generator, dtype=torch.float64),
                       500 * torch.rand(n, generator=generator, dtype=torch.float64))
    noisy = ARCFACE_TEMPLATE.double() + noise * torch.randn(n, 5, 2, generator=generator, dtype=torch.float64)
    return transform_points(noisy, moves)


def residual(matrix, src, dst):
    return ((transform_points(src, matrix) - dst) ** 2).sum((-2, -1))


def test_exact_similarities_are_recovered_batched():
    g = torch.Generator().manual_seed(0)
    truth = similarity(torch.tensor([0.5, 1.0, 3.0]), torch.tensor([-2.0, 0.0, 0.7]), torch.tensor([3.0, -40.0, 9.0]),
                       torch.tensor([100.0, 2.0, -7.0]))
    src = torch.rand(3, 7, 2, generator=g, dtype=torch.float64) * 200
    dst = transform_points(src, truth)
    torch.testing.assert_close(estimate_similarity(src, dst), truth, rtol=0, atol=1e-9)
    # Batched = one at a time; a single (N, 2) destination broadcasts over the batch.
    torch.testing.assert_close(estimate_similarity(src[1], dst[1]), truth[1], rtol=0, atol=1e-9)
    shared = estimate_similarity(src, dst[0])
    assert shared.shape == (3, 2, 3)
    torch.testing.assert_close(shared[2], estimate_similarity(src[2], dst[0]), rtol=0, atol=1e-12)


def test_the_fit_is_the_least_squares_optimum_and_never_a_reflection():
    g = torch.Generator().manual_seed(1)
    src = random_faces(16, g, noise=4.0)
    template = ARCFACE_TEMPLATE.double()
    mirrored = torch.stack([112 - template[:, 0], template[:, 1]], -1)
    dst = template.expand(16, 5, 2).clone()
    dst[:8] = mirrored                                       # a reflection would fit these best
    fit = estimate_similarity(src, dst)
    linear = fit[..., :2]
    assert (torch.linalg.det(linear) > 0).all()
    torch.testing.assert_close(linear[..., 0, 0], linear[..., 1, 1], rtol=0, atol=1e-12)   # rotation·scale
    torch.testing.assert_close(linear[..., 0, 1], -linear[..., 1, 0], rtol=0, atol=1e-12)
    best = residual(fit, src, dst)
    for step in range(50):                 # any nearby similarity fits worse
        scale, angle, tx, ty = (1 + 0.01 * torch.randn(4, generator=g, dtype=torch.float64)).unbind()
        nudge = similarity(scale, angle - 1, tx - 1, ty - 1)
        moved = torch.cat([nudge[:, :2] @ fit[..., :2], (nudge[:, :2] @ fit[..., 2:]) + nudge[:, 2:]], -1)
        assert (residual(moved, src, dst) >= best - 1e-9).all()


def test_estimate_norm_maps_the_landmarks_onto_the_template():
    for size, scale, shift in [(112, 1.0, 0.0), (224, 2.0, 0.0), (128, 1.0, 8.0), (256, 2.0, 16.0)]:
        # the template itself, and the template twice as big, rotated by 90 degrees and moved
        torch.testing.assert_close(estimate_norm(ARCFACE_TEMPLATE, size),
                                   torch.tensor([[scale, 0, shift], [0, scale, 0]], dtype=torch.float64),
                                   rtol=0, atol=1e-5)
        photo = transform_points(ARCFACE_TEMPLATE.double(), similarity(2.0, math.pi / 2, 300.0, 50.0))
        m = estimate_norm(photo, size)
        torch.testing.assert_close(m, torch.tensor([[0, scale / 2, shift - 25 * scale],
                                                    [-scale / 2, 0, 150 * scale]], dtype=torch.float64),
                                   rtol=0, atol=1e-9)
        torch.testing.assert_close(transform_points(photo, m), arcface_template(size), rtol=0, atol=1e-9)


def test_estimate_norm_equals_insightface_through_scikit_image():
    np = pytest.importorskip("numpy")
    transform = pytest.importorskip("skimage.transform")
    g = torch.Generator().manual_seed(2)
    faces = random_faces(40, g, noise=3.0)
    faces[::4, :, 0] = 900 - faces[::4, :, 0]                 # some mirrored faces (the no-reflection branch)
    arcface_dst = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                            [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)
    for size in (112, 224, 128, 256, 896):
        # insightface's face_align.estimate_norm, step by step
        ratio, diff_x = (size / 112.0, 0.0) if size % 112 == 0 else (size / 128.0, 8.0 * size / 128.0)
        dst = arcface_dst * ratio
        dst[:, 0] += diff_x
        ours = estimate_norm(faces, size).numpy()
        for face, m in zip(faces.numpy(), ours, strict=True):
            if hasattr(transform.SimilarityTransform, "from_estimate"):      # scikit-image >= 0.26
                reference = transform.SimilarityTransform.from_estimate(face, dst).params[:2]
            else:
                tform = transform.SimilarityTransform()
                tform.estimate(face, dst)
                reference = tform.params[:2]
            assert np.abs(m - reference).max() < 1e-4


def test_inverse_takes_crop_points_back_to_the_photo():
    g = torch.Generator().manual_seed(3)
    faces = random_faces(5, g)
    m = estimate_norm(faces, 112)
    back = invert_affine(m)
    assert back.shape == (5, 2, 3) and back.dtype == torch.float64
    crop_points = torch.rand(5, 9, 2, generator=g, dtype=torch.float64) * 112
    photo_points = transform_points(crop_points, back)
    torch.testing.assert_close(transform_points(photo_points, m), crop_points, rtol=0, atol=1e-9)
    torch.testing.assert_close(invert_affine(back), m, rtol=0, atol=1e-9)
    # a hand-made case: scale 2, shift (10, 20) -> inverse scale 1/2, shift (-5, -10)
    torch.testing.assert_close(invert_affine(torch.tensor([[2.0, 0, 10], [0, 2, 20]])),
                               torch.tensor([[0.5, 0, -5], [0, 0.5, -10]]))
    # the template in the crop lands on the (noisy) landmarks up to the fit's residual
    assert (transform_points(arcface_template(112), back) - faces).norm(dim=-1).mean() < 10


def test_empty_batches():
    assert estimate_norm(torch.zeros(0, 5, 2)).shape == (0, 2, 3)
    assert estimate_similarity(torch.zeros(0, 3, 2), torch.zeros(0, 3, 2)).shape == (0, 2, 3)
    assert invert_affine(torch.zeros(0, 2, 3)).shape == (0, 2, 3)
    assert transform_points(torch.zeros(0, 4, 2), torch.zeros(0, 2, 3)).shape == (0, 4, 2)


def test_array_likes_and_dtypes():
    np = pytest.importorskip("numpy")
    points = ARCFACE_TEMPLATE.numpy() * 3
    m = estimate_norm(points.tolist())
    assert m.dtype == torch.float64
    torch.testing.assert_close(m, estimate_norm(torch.from_numpy(points)))
    rounded = np.rint(points)
    torch.testing.assert_close(estimate_norm(rounded.astype(np.int32)), estimate_norm(rounded), rtol=0, atol=0)
    assert transform_points(torch.zeros(1, 2, dtype=torch.float32), m).dtype == torch.float64


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"landmarks: expected shape \(\.\.\., 5, 2\)"):
        estimate_norm(torch.zeros(68, 2))
    with pytest.raises(ValueError, match="image_size: expected a positive multiple of 112 or 128"):
        estimate_norm(ARCFACE_TEMPLATE, 120)
    same = torch.ones(3, 5, 2) * 7.3
    same[0] = ARCFACE_TEMPLATE
    with pytest.raises(ValueError, match=r"landmarks: expected points that are not all coincident.*\(1,\)"):
        estimate_norm(same)
    nan = ARCFACE_TEMPLATE.clone()
    nan[2, 1] = float("inf")
    with pytest.raises(ValueError, match="landmarks: expected finite coordinates"):
        estimate_norm(nan)
    with pytest.raises(ValueError, match=r"dst: expected as many points as src \(5\)"):
        estimate_similarity(torch.rand(5, 2), torch.rand(4, 2))
    with pytest.raises(ValueError, match="src: expected at least 2 points"):
        estimate_similarity(torch.rand(1, 2), torch.rand(1, 2))
    with pytest.raises(ValueError, match="does not broadcast"):
        estimate_similarity(torch.rand(3, 5, 2), torch.rand(2, 5, 2))
    with pytest.raises(ValueError, match="matrix: expected invertible maps, got a singular one at batch index"):
        invert_affine(torch.tensor([[[1.0, 0, 0], [0, 1, 0]], [[1.0, 2, 0], [2, 4, 0]]]))
    with pytest.raises(ValueError, match=r"matrix: expected shape \(\.\.\., 2, 3\)"):
        transform_points(torch.zeros(4, 2), torch.eye(3))
    with pytest.raises(TypeError, match="points: expected a tensor or array of numbers"):
        transform_points(object(), torch.zeros(2, 3))
