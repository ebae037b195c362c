"""warp_affine and norm_crop: bilinear sampling at M⁻¹·(x, y, 1), black border, batched, as cv2.warpAffine."""
import math

import pytest
import torch

from pyfacex.align import ARCFACE_TEMPLATE, estimate_norm, invert_affine, norm_crop, transform_points, warp_affine


def similarity(scale, angle, tx, ty):
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return torch.tensor([[c, -s, tx], [s, c, ty]], dtype=torch.float64)


def ramp_photo(height=200, width=240):
    """uint8 (3, H, W): red = x, green = y, blue = 200. Bilinear interpolation is exact on it."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([xs, ys, torch.full_like(xs, 200)]).to(torch.uint8)


def sampled_positions(matrix, size):
    """(2, S, S) float64 photo x, y that crop pixel (x, y) reads: M⁻¹ @ (x, y, 1)."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    crop = torch.stack([xs, ys], -1).reshape(-1, 2)
    return transform_points(crop, invert_affine(matrix)).reshape(size, size, 2).permute(2, 0, 1)


def test_crops_sample_the_photo_at_the_inverse_map_hand_computed():
    photo = ramp_photo()
    landmarks = transform_points(ARCFACE_TEMPLATE.double(), similarity(1.3, 0.5, 110.0, -20.0))
    m = estimate_norm(landmarks, 112)
    crop = norm_crop(photo, landmarks)
    assert crop.shape == (3, 112, 112) and crop.dtype == torch.uint8
    where = sampled_positions(m, 112)
    inside = (where[0] >= 0) & (where[0] <= 239) & (where[1] >= 0) & (where[1] <= 199)
    far = (where[0] < -1) | (where[0] > 240) | (where[1] < -1) | (where[1] > 200)
    assert inside.sum() > 5000 and far.sum() > 200            # the crop runs off the top of the photo
    # inside: the ramp at the sampled position, rounded; far outside: the black border
    assert ((crop[0].double() - where[0])[inside].abs() <= 0.5 + 1e-3).all()
    assert ((crop[1].double() - where[1])[inside].abs() <= 0.5 + 1e-3).all()
    assert (crop[2][inside] == 200).all()
    assert (crop[:, far] == 0).all()
    # at the edge the photo fades into the border over one pixel, as OpenCV's BORDER_CONSTANT does
    edge = (where[1] > -1) & (where[1] < 0) & (where[0] > 1) & (where[0] < 238)
    assert edge.any()
    expected = 200 * (1 + where[1][edge])
    assert ((crop[2][edge].double() - expected).abs() <= 0.5 + 1e-3).all()


def test_the_landmarks_land_on_the_template():
    """White dots drawn at the landmarks come out, in the crop, centred on the template's points."""
    landmarks = transform_points(ARCFACE_TEMPLATE.double(), similarity(2.2, -0.3, 60.0, 90.0)).round()
    photo = torch.zeros(3, 400, 400, dtype=torch.uint8)
    for x, y in landmarks.long().tolist():
        photo[:, y - 2:y + 3, x - 2:x + 3] = 255
    for size in (112, 128, 224):
        crop = norm_crop(photo, landmarks, size).double()[0]
        targets = transform_points(landmarks, estimate_norm(landmarks, size))
        ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                                indexing="ij")
        for tx, ty in targets.tolist():
            near = ((xs - tx) ** 2 + (ys - ty) ** 2 < (size / 112 * 5) ** 2) * crop
            centre = torch.stack([(near * xs).sum(), (near * ys).sum()]) / near.sum()
            assert (centre - torch.tensor([tx, ty], dtype=torch.float64)).norm() < 0.3


def test_batched_equals_one_at_a_time_and_lists_of_sizes():
    g = torch.Generator().manual_seed(0)
    photos = (torch.rand(3, 3, 90, 100, generator=g) * 255).to(torch.uint8)
    landmarks = torch.stack([transform_points(ARCFACE_TEMPLATE.double(), similarity(0.7 + 0.1 * i, 0.2 * i,
                                                                                     5.0 * i, 3.0)) for i in range(3)])
    batched = norm_crop(photos, landmarks)
    assert batched.shape == (3, 3, 112, 112)
    for i in range(3):
        assert torch.equal(batched[i], norm_crop(photos[i], landmarks[i]))
    mixed = [photos[0], photos[1, :, :60, :], photos[2, :, 10:, 5:]]
    listed = norm_crop(mixed, landmarks)
    assert listed.shape == (3, 3, 112, 112)
    assert torch.equal(listed[1], norm_crop(mixed[1], landmarks[1]))
    assert not torch.equal(listed[1], batched[1])              # the cut-off photo reads zeros below row 60
    # one (2, 3) matrix broadcasts over a batch
    m = estimate_norm(landmarks[0])
    assert torch.equal(warp_affine(photos, m, 112), torch.stack([warp_affine(p, m, 112) for p in photos]))


def test_float_images_keep_their_dtype_and_are_not_rounded():
    photo = ramp_photo().double() / 255
    m = invert_affine(similarity(1.25, 0.3, 40.0, 20.0))      # output (x, y) reads well inside the photo
    out = warp_affine(photo.float(), m, (50, 60))
    assert out.shape == (3, 50, 60) and out.dtype == torch.float32
    where = sampled_positions(m, 60)[:, :50, :60]
    inside = (where[0] >= 0) & (where[0] <= 239) & (where[1] >= 0) & (where[1] <= 199)
    assert inside.all()
    torch.testing.assert_close(out[0].double() * 255, where[0], rtol=0, atol=2e-3)
    exact = warp_affine(photo, m, (50, 60), border_value=0.5)
    assert exact.dtype == torch.float64
    torch.testing.assert_close(exact[1] * 255, where[1], rtol=0, atol=1e-9)


def test_border_value_and_paste_back():
    photo = ramp_photo(160, 200)
    shift = similarity(1.0, 0.0, 100.0, 0.0)                  # moves the photo 100 px right
    out = warp_affine(photo, shift, (160, 160), border_value=7)
    assert (out[:, :, :99] == 7).all() and torch.equal(out[:, :, 100:], photo[:, :, :60])
    far = warp_affine(photo.double(), similarity(1.0, 0.0, 1e9, -1e9), (4, 4), border_value=1e6)
    assert (far == 1e6).all()                                 # no cancellation however far away
    # The inverse warp puts a crop back where it came from (on the ramp: to the rounding).
    landmarks = transform_points(ARCFACE_TEMPLATE.double(), similarity(0.9, 0.25, 50.0, 5.0))
    m = estimate_norm(landmarks, 112)
    crop = norm_crop(photo, landmarks)
    assert (crop[2] == 200).all()                             # the crop lies wholly inside the photo
    pasted = warp_affine(crop, invert_affine(m), (160, 200))
    covered = sampled_positions(invert_affine(m), 200)[:, :160, :200]
    covered = (covered[0] >= 1) & (covered[0] <= 110) & (covered[1] >= 1) & (covered[1] <= 110)
    assert covered.sum() > 3000
    assert (pasted[:2, covered].int() - photo[:2, covered].int()).abs().max() <= 1


def test_matches_cv2_warpaffine():
    np = pytest.importorskip("numpy")
    cv2 = pytest.importorskip("cv2")
    g = torch.Generator().manual_seed(1)
    smooth = torch.nn.functional.interpolate(torch.rand(4, 3, 24, 32, generator=g) * 255, size=(240, 320),
                                             mode="bicubic", align_corners=False).clamp(0, 255).round()
    sharp = (torch.rand(4, 3, 240, 320, generator=g) * 255).round()
    for photos in (smooth.to(torch.uint8), sharp.to(torch.uint8)):
        landmarks = torch.stack([transform_points(ARCFACE_TEMPLATE.double() + torch.randn(5, 2, generator=g,
                                                                                          dtype=torch.float64),
                                                  similarity(0.6 + 0.5 * i, 0.35 * i - 0.5, 60.0 * i, 30.0 + 7 * i))
                                 for i in range(4)])
        for size in (112, 128):
            crops = norm_crop(photos, landmarks, size)
            matrices = estimate_norm(landmarks, size)
            for crop, photo, m in zip(crops, photos, matrices, strict=True):
                reference = cv2.warpAffine(np.ascontiguousarray(photo.permute(1, 2, 0).numpy()), m.numpy(),
                                           (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
                diff = (crop.permute(1, 2, 0).int() - torch.from_numpy(reference).int()).abs().double()
                assert diff.mean() <= 2.0                                      # the bound
                assert (diff <= 1).double().mean() > 0.99                       # measured: off by 1 at most
                assert (reference == 0).all(-1).sum() == (crop == 0).all(0).sum()  # same border


def test_empty_inputs():
    assert norm_crop(torch.zeros(0, 3, 30, 40, dtype=torch.uint8), torch.zeros(0, 5, 2)).shape == (0, 3, 112, 112)
    assert norm_crop([], torch.zeros(0, 5, 2), 128).shape == (0, 3, 128, 128)
    assert warp_affine(torch.zeros(0, 1, 5, 5), torch.zeros(0, 2, 3), 4).shape == (0, 1, 4, 4)


def test_bad_inputs_are_named():
    photo = torch.zeros(3, 50, 50, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"images: expected RGB \(B, 3, H, W\) or \(3, H, W\)"):
        norm_crop(torch.zeros(50, 50, 3, dtype=torch.uint8), ARCFACE_TEMPLATE)              # HWC by mistake
    with pytest.raises(TypeError, match="images: expected a uint8 or floating tensor, got torch.int32"):
        norm_crop(photo.int(), ARCFACE_TEMPLATE)
    with pytest.raises(TypeError, match="images: expected a torch.Tensor"):
        warp_affine(photo.numpy(), torch.zeros(2, 3), 10)
    with pytest.raises(ValueError, match=r"landmarks: expected shape \(2, 5, 2\) for images of shape"):
        norm_crop(photo.expand(2, 3, 50, 50), ARCFACE_TEMPLATE)
    with pytest.raises(ValueError, match=r"landmarks: expected shape \(1, 5, 2\) for 1 images"):
        norm_crop([photo], ARCFACE_TEMPLATE)
    with pytest.raises(ValueError, match="image_size: expected a positive multiple of 112 or 128"):
        norm_crop(photo, ARCFACE_TEMPLATE, 100)
    with pytest.raises(ValueError, match=r"matrix: expected shape \(2, 3\) or \(2, 2, 3\)"):
        warp_affine(photo.expand(2, 3, 50, 50), torch.zeros(3, 2, 3), 10)
    with pytest.raises(ValueError, match="matrix: expected invertible maps"):
        warp_affine(photo, torch.zeros(2, 3), 10)
    with pytest.raises(ValueError, match="size: expected a positive int or a"):
        warp_affine(photo, torch.eye(2, 3), (0, 10))
    with pytest.raises(ValueError, match=r"images: expected shape \(C, H, W\) or \(B, C, H, W\)"):
        warp_affine(torch.zeros(3, 0, 5), torch.eye(2, 3), 10)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(2)
    photos = (torch.rand(2, 3, 80, 90, generator=g) * 255).to(torch.uint8)
    landmarks = torch.stack([transform_points(ARCFACE_TEMPLATE.double(), similarity(0.6, 0.1 * i, 4.0, 2.0))
                             for i in range(2)])
    on_gpu = norm_crop(photos.cuda(), landmarks.cuda())
    assert on_gpu.device.type == "cuda"
    assert (on_gpu.cpu().int() - norm_crop(photos, landmarks).int()).abs().max() <= 1
