"""68 -> 5 points: insightface's convention, shared with the synthetic protocol writers."""
import pytest
import torch

import pyfacex
from pyfacex.align import ARCFACE_TEMPLATE, estimate_norm, five_points, norm_crop, transform_points, warp_affine
from pyfacex.data.synthetic import Nuisance, SyntheticFaceWorld
from pyfacex.data.synthetic.protocols import _common


def test_eye_centres_are_corner_midpoints_as_in_insightface():
    landmarks = torch.stack([torch.arange(68.0), 2 * torch.arange(68.0)], -1)          # point i = (i, 2i)
    expected = torch.tensor([[37.5, 75.0], [43.5, 87.0], [30.0, 60.0], [48.0, 96.0], [54.0, 108.0]])
    torch.testing.assert_close(five_points(landmarks), expected, rtol=0, atol=0)
    # Not the mean of the six lid points (36..41 would give x = 38.5).
    assert five_points(landmarks)[0, 0] != landmarks[36:42, 0].mean()


def test_batched_five_point_input_and_unused_nan():
    landmarks = torch.rand(2, 3, 68, 2) * 100
    out = five_points(landmarks)
    assert out.shape == (2, 3, 5, 2) and out.dtype == torch.float32
    torch.testing.assert_close(out[1, 2], five_points(landmarks[1, 2]), rtol=0, atol=0)
    five = torch.rand(4, 5, 2)
    assert five_points(five) is five or torch.equal(five_points(five), five)
    landmarks[0, 0, 5] = float("nan")                          # a jaw point a detector lost: not used
    assert torch.isfinite(five_points(landmarks)).all()
    assert five_points(torch.zeros(0, 68, 2)).shape == (0, 5, 2)
    assert five_points(torch.zeros(68, 2, dtype=torch.int64)).dtype == torch.float64


def test_bad_landmarks_are_named():
    with pytest.raises(ValueError, match=r"landmarks: expected shape \(\.\.\., 68 or 5, 2\)"):
        five_points(torch.zeros(3, 67, 2))
    nan = torch.zeros(2, 68, 2)
    nan[1, 30, 0] = float("nan")
    with pytest.raises(ValueError, match=r"landmarks: expected finite coordinates.*batch index \(1,\)"):
        five_points(nan)
    with pytest.raises(TypeError, match="landmarks: expected real numbers"):
        five_points(torch.zeros(68, 2, dtype=torch.bool))


def test_the_synthetic_writers_use_the_same_definition():
    assert _common.five_points is five_points is pyfacex.align.five_points


def test_synthetic_faces_align_the_same_wherever_the_photo_puts_them():
    """Move rendered faces into a bigger photo by a known similarity, carry their 68 landmarks along:
    aligning either by five_points must give the same crop, since the fit is similarity-equivariant."""
    batch = SyntheticFaceWorld(nuisance=Nuisance(difficulty=0.3)).render(torch.arange(3), 0)
    angle = torch.tensor(0.4, dtype=torch.float64)
    to_photo = torch.tensor([[2.5 * angle.cos(), -2.5 * angle.sin(), 120.0],
                             [2.5 * angle.sin(), 2.5 * angle.cos(), 40.0]], dtype=torch.float64)
    photos = warp_affine(batch.images, to_photo, (400, 420))
    moved = transform_points(batch.landmarks, to_photo)
    direct = norm_crop(batch.images, five_points(batch.landmarks))
    via_photo = norm_crop(photos, five_points(moved))
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))        # away from the black border
    assert (direct[inner].float() - via_photo[inner].float()).abs().mean() < 1.0          # measured 0.12
    # and the fit puts the five points near the template (the world renders ArcFace-framed faces)
    placed = transform_points(five_points(moved), estimate_norm(five_points(moved)))
    assert (placed - ARCFACE_TEMPLATE.double()).norm(dim=-1).max() < 8.0
