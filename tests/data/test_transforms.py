"""Transforms: functional ops (shapes, ranges, identities, defining properties) and random transforms
(probabilities, determinism), with bad arguments named in the errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from pyfacex.data import transforms as T
from pyfacex.data.transforms import functional as TF


def _images(b=4, h=24, w=20, dtype=torch.uint8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8)
    return x if dtype == torch.uint8 else x.to(dtype) / 255


# Each op with non-identity parameters, callable as op(images) for any batch size.
OPS = {
    "gaussian_blur": lambda x: T.gaussian_blur(x, 1.5),
    "motion_blur": lambda x: T.motion_blur(x, 30.0, 5),
    "down_up": lambda x: T.down_up(x, 7, "bicubic"),
    "crop_in_place": lambda x: T.crop_in_place(x, torch.tensor([2, 3, 10, 9]).expand(*x.shape[:-3], 4)),
    "adjust_photometric": lambda x: T.adjust_photometric(x, 1.6, 1.7, 1.8),
    "add_gaussian_noise": lambda x: T.add_gaussian_noise(x, 0.3, torch.Generator().manual_seed(1)),
    "jpeg_compress": lambda x: T.jpeg_compress(x, 20),
    "occlude": lambda x: T.occlude(x, torch.tensor([1, 1, 5, 5]).expand(*x.shape[:-3], 4),
                                   0.5 if x.is_floating_point() else 128),
    "hflip": T.hflip,
}


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_ops_keep_shape_dtype_and_range(name, dtype):
    batch = _images(dtype=dtype)
    out = OPS[name](batch)
    assert out.shape == batch.shape and out.dtype == dtype
    assert not torch.equal(out, batch)  # the parameters above are not identities
    if dtype == torch.float32:
        assert out.min() >= 0 and out.max() <= 1
    single = OPS[name](batch[0])
    assert single.shape == batch[0].shape and single.dtype == dtype
    torch.testing.assert_close(single, out[0], atol=1 if dtype == torch.uint8 else 1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_accept_empty_batch(name):
    empty = torch.zeros(0, 3, 24, 20, dtype=torch.uint8)
    assert OPS[name](empty).shape == empty.shape


def test_uint8_results_are_rounded_and_clamped():
    x = torch.full((1, 3, 8, 8), 200, dtype=torch.uint8)
    assert T.adjust_photometric(x, brightness=2.0).eq(255).all()  # 400 clamps to 255, no wrap-around
    assert T.adjust_photometric(x, brightness=0.503).eq(101).all()  # 100.6 rounds up, not truncated


def test_normalize_range_and_exact_round_trip():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(2, 3, 16, 16)
    y = T.normalize(x)
    assert y.dtype == torch.float32 and y.min() == -1 and y.max() == 1
    torch.testing.assert_close(y, (x.float() / 255 - 0.5) / 0.5)
    assert torch.equal(T.denormalize(y), x)
    assert torch.equal(T.normalize(x.float() / 255), y)


def test_hflip_mirrors_and_twice_is_identity():
    x = _images()
    assert torch.equal(T.hflip(x)[..., 0], x[..., -1])
    assert torch.equal(T.hflip(T.hflip(x)), x)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_identity_parameters_are_identities(dtype):
    x = _images(dtype=dtype)
    assert torch.equal(T.gaussian_blur(x, 0.0), x)
    assert torch.equal(T.gaussian_blur(x, torch.tensor([0.0, 0.0, 0.0, 0.0])), x)
    assert torch.equal(T.motion_blur(x, 37.0, 1.0), x)
    assert torch.equal(T.motion_blur(x, torch.tensor([0.0, 45, 90, 10]), torch.tensor([0.0, 1, 0.5, 1])), x)
    assert torch.equal(T.down_up(x, 24), x)
    assert torch.equal(T.down_up(x, 100, "bicubic"), x)
    assert torch.equal(T.adjust_photometric(x, 1.0, 1.0, 1.0), x)
    assert torch.equal(T.crop_in_place(x, torch.tensor([0, 0, 24, 20]).expand(4, 4)), x)
    assert torch.equal(T.occlude(x, torch.tensor([3, 3, 0, 5]).expand(4, 4), 0), x)
    assert torch.equal(T.add_gaussian_noise(x, 0.0), x)


def test_per_image_parameters_act_per_image():
    x = _images()
    sigma = torch.tensor([0.0, 2.0, 0.0, 1.0])
    out = T.gaussian_blur(x, sigma)
    assert torch.equal(out[0], x[0]) and torch.equal(out[2], x[2])
    assert torch.equal(out[1], T.gaussian_blur(x[1], 2.0))
    sizes = torch.tensor([24, 6, 12, 24])
    out = T.down_up(x, sizes, ["area", "nearest", "bilinear", "bicubic"], "bilinear")
    assert torch.equal(out[0], x[0]) and torch.equal(out[3], x[3])
    assert torch.equal(out[1], T.down_up(x[1], 6, "nearest", "bilinear"))


def test_gaussian_blur_keeps_constant_and_smooths():
    constant = torch.full((2, 3, 15, 17), 0.3)
    torch.testing.assert_close(T.gaussian_blur(constant, torch.tensor([0.7, 3.0])), constant)
    impulse = torch.zeros(1, 3, 15, 15)
    impulse[..., 7, 7] = 1
    blurred = T.gaussian_blur(impulse, 1.0)
    torch.testing.assert_close(blurred.sum(), torch.tensor(3.0))
    # separable and symmetric: the impulse response is the outer product of a 1-D Gaussian
    row = blurred[0, 0, 7]
    torch.testing.assert_close(blurred[0, 0], torch.outer(row, row) / row.max(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(row[8] / row[7], torch.tensor(math.exp(-0.5)), rtol=1e-5, atol=0)


def test_motion_blur_kernels_sum_to_one_and_follow_the_angle():
    angles, lengths = torch.tensor([0.0, 90.0, 45.0, 123.0]), torch.tensor([5.0, 4.0, 7.0, 9.0])
    kernels = T.motion_blur_kernels(angles, lengths)
    torch.testing.assert_close(kernels.sum((1, 2)), torch.ones(4, dtype=torch.float64))
    k = kernels.shape[-1] // 2
    assert torch.equal(kernels[0].nonzero()[:, 0].unique(), torch.tensor([k]))  # one row
    torch.testing.assert_close(kernels[0, k, k - 2:k + 3], torch.full((5,), 0.2, dtype=torch.float64))
    assert torch.equal(kernels[1].nonzero()[:, 1].unique(), torch.tensor([k]))  # one column
    # 45° counter-clockwise on screen: weight up-right and down-left of the centre, not up-left
    assert kernels[2, k - 2, k + 2] > 0 and kernels[2, k + 2, k - 2] > 0 and kernels[2, k - 2, k - 2] == 0
    assert torch.equal(kernels[3], kernels[3].flip(0, 1))  # a centred line is point-symmetric


def test_horizontal_motion_blur_spreads_only_horizontally():
    x = torch.zeros(1, 3, 11, 16, dtype=torch.uint8)
    x[..., 8:] = 255  # vertical edge
    x[..., 5, 3] = 255  # and a point in the dark half
    out = T.motion_blur(x, 0.0, 5)
    changed = (out != x).any(1)[0].nonzero()
    assert set(changed[:, 1].tolist()) == set(range(1, 10))  # columns within 2 of the features
    assert set(changed[changed[:, 0] != 5, 1].tolist()) == {6, 7, 8, 9}  # the edge spreads sideways
    assert torch.equal(out[..., 4, :], out[..., 0, :])  # edge rows unchanged except the point's
    assert out[0, 0, 5, 1:6].tolist() == [51] * 5 and out[0, 0, 4, 3] == 0 and out[0, 0, 6, 3] == 0
    assert torch.equal(T.motion_blur(x.transpose(-1, -2), 90.0, 5), out.transpose(-1, -2))


def test_down_up_matches_interpolate_and_loses_high_frequency():
    x = torch.rand(2, 3, 16, 12, generator=torch.Generator().manual_seed(0))
    for mode in TF.INTERPOLATIONS:
        kwargs = {} if mode in ("nearest", "area") else {"align_corners": False}
        small = F.interpolate(x, size=(5, 5), mode=mode, **kwargs)
        expected = F.interpolate(small, size=(16, 12), mode=mode, **kwargs).clamp(0, 1)
        torch.testing.assert_close(T.down_up(x, 5, mode), expected, atol=1e-5, rtol=0)
    checker = ((torch.arange(32)[:, None] + torch.arange(32)) % 2 * 255).to(torch.uint8).expand(1, 3, 32, 32)
    for mode in ("bilinear", "area", "bicubic"):
        assert T.down_up(checker, 8, mode).float().var() < 0.1 * checker.float().var()


def test_crop_in_place_zeros_exactly_outside():
    x = _images(b=2, dtype=torch.float32) + 0.01  # no zero pixel inside
    boxes = torch.tensor([[2, 3, 5, 4], [20, 15, 10, 10]])  # the second reaches past the image
    out = T.crop_in_place(x, boxes)
    mask = torch.zeros(2, 1, 24, 20, dtype=torch.bool)
    mask[0, :, 2:7, 3:7] = True
    mask[1, :, 20:, 15:] = True
    assert torch.equal(out != 0, mask.expand_as(out))
    assert torch.equal(out[mask.expand_as(out)], x[mask.expand_as(x)])


def test_photometric_follows_colorjitter_definitions():
    x = _images(dtype=torch.float32) * 0.5
    torch.testing.assert_close(T.adjust_photometric(x, brightness=1.5).mean(), x.mean() * 1.5)
    grey = (x * torch.tensor([0.2989, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    flat = T.adjust_photometric(x, contrast=0.0)
    torch.testing.assert_close(flat, grey.mean((2, 3), keepdim=True).expand_as(x))
    torch.testing.assert_close(T.adjust_photometric(x, saturation=0.0), grey.expand_as(x))
    # per-image factors and the three commute when nothing clamps
    b = torch.tensor([0.8, 1.0, 1.2, 0.9])
    both = T.adjust_photometric(x, b, 0.7, 1.3)
    torch.testing.assert_close(both[2], T.adjust_photometric(x[2], 1.2, 0.7, 1.3))
    torch.testing.assert_close(both, T.adjust_photometric(T.adjust_photometric(x, 1.0, 0.7, 1.3), b))


def test_noise_is_seeded_and_scaled_to_the_range():
    x = torch.full((2, 3, 64, 64), 128, dtype=torch.uint8)
    a = T.add_gaussian_noise(x, 0.02, torch.Generator().manual_seed(3))
    assert torch.equal(a, T.add_gaussian_noise(x, 0.02, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, T.add_gaussian_noise(x, 0.02, torch.Generator().manual_seed(4)))
    assert abs(a.float().std().item() - 0.02 * 255) < 0.3
    f = T.add_gaussian_noise(x.float() / 255, 0.02, torch.Generator().manual_seed(3))
    assert abs(f.std().item() - 0.02) < 0.002


def test_jpeg_compress_quality_orders_error():
    x = T.gaussian_blur(_images(b=2, h=32, w=32), 1.0)
    errors = [(T.jpeg_compress(x, q).float() - x.float()).abs().mean() for q in (5, 50, 95)]
    assert errors[0] > errors[1] > errors[2]
    per_image = T.jpeg_compress(x, torch.tensor([5, 95]))
    assert torch.equal(per_image[1], T.jpeg_compress(x[1], 95))


def test_occlude_paints_box_with_per_image_colors():
    x = _images(b=2)
    out = T.occlude(x, torch.tensor([[0, 0, 3, 4], [10, 10, 2, 2]]), torch.tensor([[1, 2, 3], [9, 9, 9]]))
    assert out[0, :, :3, :4].flatten(1).tolist() == [[1] * 12, [2] * 12, [3] * 12]
    assert (out[1, :, 10:12, 10:12] == 9).all()
    outside = torch.ones_like(x, dtype=torch.bool)
    outside[0, :, :3, :4] = False
    outside[1, :, 10:12, 10:12] = False
    assert torch.equal(out[outside], x[outside])


@pytest.mark.parametrize("call, match", [
    (lambda: T.gaussian_blur(torch.zeros(2, 3, 8, 8), -1.0), "sigma"),
    (lambda: T.gaussian_blur(torch.zeros(2, 3, 8, 8), torch.ones(3)), "sigma"),
    (lambda: T.gaussian_blur(torch.zeros(3, 8), 1.0), "images"),
    (lambda: T.hflip(torch.zeros(2, 3, 8, 8, dtype=torch.int32)), "images"),
    (lambda: T.hflip([[0]]), "images"),
    (lambda: T.motion_blur(torch.zeros(1, 3, 8, 8), 0.0, -2), "length"),
    (lambda: T.down_up(torch.zeros(1, 3, 8, 8), 0), "size"),
    (lambda: T.down_up(torch.zeros(1, 3, 8, 8), 4.5), "size"),
    (lambda: T.down_up(torch.zeros(1, 3, 8, 8), 4, "lanczos"), "interpolation"),
    (lambda: T.crop_in_place(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, dtype=torch.long)), "boxes"),
    (lambda: T.crop_in_place(torch.zeros(2, 3, 8, 8), torch.zeros(2, 4)), "boxes"),
    (lambda: T.crop_in_place(torch.zeros(1, 3, 8, 8), torch.tensor([[0, 0, -1, 2]])), "boxes"),
    (lambda: T.adjust_photometric(torch.zeros(1, 1, 8, 8), 1.0), "images"),
    (lambda: T.adjust_photometric(torch.zeros(1, 3, 8, 8), contrast=-0.5), "contrast"),
    (lambda: T.jpeg_compress(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 0), "quality"),
    (lambda: T.occlude(torch.zeros(1, 3, 8, 8), torch.tensor([[0, 0, 2, 2]]), 2.0), "colors"),
    (lambda: T.denormalize(torch.zeros(1, 3, 8, 8, dtype=torch.uint8)), "images"),
    (lambda: T.RandomHorizontalFlip(1.5), "p"),
    (lambda: T.LowQualityAugment(p_crop=-0.1), "p_crop"),
    (lambda: T.LowQualityAugment(crop_scale=(0.0, 1.0)), "crop_scale"),
    (lambda: T.RandomMotionBlur(max_length=2, min_length=3), "max_length"),
    (lambda: T.RandomDownUp(sizes=[0]), "sizes"),
    (lambda: T.RandomOcclusion(max_area=1.5), "max_area"),
    (lambda: T.Compose([T.hflip, 3]), "transforms"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# ----------------------------------------------------------------------------- random transforms

RANDOM = {
    "flip": lambda p: T.RandomHorizontalFlip(p),
    "low_quality": lambda p: T.LowQualityAugment(p, p, p),
    "motion": lambda p: T.RandomMotionBlur(9, p),
    "down_up": lambda p: T.RandomDownUp((6, 10), p, ("bilinear", "area")),
    "occlusion": lambda p: T.RandomOcclusion(p, max_area=0.3, min_area=0.1),
    "compose": lambda p: T.Compose([T.RandomHorizontalFlip(p), T.RandomMotionBlur(p=p)]),
}


@pytest.mark.parametrize("name", sorted(RANDOM))
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_random_transforms_p0_p1_seeds_shapes(name, dtype):
    x = _images(b=6, dtype=dtype)
    assert torch.equal(RANDOM[name](0.0)(x, torch.Generator().manual_seed(0)), x)
    out = RANDOM[name](1.0)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == dtype
    assert all(not torch.equal(o, i) for o, i in zip(out, x))  # every image changed
    half = RANDOM[name](0.5)
    a = half(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, half(x, torch.Generator().manual_seed(7)))
    assert not torch.equal(a, half(x, torch.Generator().manual_seed(8)))
    single = half(x[0], torch.Generator().manual_seed(7))
    assert single.shape == x[0].shape
    assert half(x[:0], torch.Generator().manual_seed(7)).shape == x[:0].shape


def test_probability_selects_about_p_of_the_images():
    x = _images(b=400, h=8, w=8)
    changed = (T.RandomMotionBlur(p=0.3)(x, torch.Generator().manual_seed(0)) != x).flatten(1).any(1)
    assert 0.22 < changed.float().mean() < 0.38


def test_low_quality_params_describe_what_was_done():
    x = _images(b=64, h=32, w=32)
    out, params = T.LowQualityAugment(0.5, 0.0, 0.0).with_params(x, torch.Generator().manual_seed(0))
    cropped = (params.crop_boxes != torch.tensor([0, 0, 32, 32])).any(1)
    assert 10 < cropped.sum() < 54
    assert torch.equal(out, T.crop_in_place(x, params.crop_boxes))
    h, w = params.crop_boxes[:, 2].double(), params.crop_boxes[:, 3].double()
    assert (h * w / 1024)[cropped].min() >= 0.15 and ((w / h)[cropped] - 1).abs().max() < 0.45
    torch.testing.assert_close(params.crop_ratio, torch.minimum(h, w) / 32)
    assert (params.crop_ratio[~cropped] == 1).all()
    assert (params.low_res_size == 32).all() and (params.photometric == 1).all()
    _, params = T.LowQualityAugment(0.0, 0.0, 1.0).with_params(x, torch.Generator().manual_seed(0))
    assert params.low_res_size.min() >= 6 and params.low_res_size.max() < 32
    _, params = T.LowQualityAugment(0.0, 1.0, 0.0).with_params(x, torch.Generator().manual_seed(0))
    assert params.photometric.min() >= 0.5 and params.photometric.max() <= 1.5


def test_resized_crop_boxes_fit_and_fall_back_to_centre():
    boxes = T.sample_resized_crop_boxes(500, 40, 30, generator=torch.Generator().manual_seed(0))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 40).all() and (left + w <= 30).all()
    assert (h > 0).all() and (w > 0).all()
    # an impossible aspect range forces torchvision's central fallback crop
    wide = T.sample_resized_crop_boxes(3, 40, 30, scale=(0.9, 1.0), ratio=(10.0, 11.0),
                                       generator=torch.Generator().manual_seed(0))
    assert torch.equal(wide, torch.tensor([[18, 0, 3, 30]] * 3))
