"""FAN: face-alignment's 2DFAN4 layout, the forward's wiring, the feature taps, landmark decoding."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pyfacex.backbones.fan import FAN, FANOutput, decode_landmarks, truncate_stacks

FIXTURE = Path(__file__).with_name("fan4_state_dict.txt")


def _tiny(num_stacks=2, depth=2, pool="avg", seed=0):
    """A narrow FAN with non-trivial BN statistics, so eval-mode mistakes would show."""
    torch.manual_seed(seed)
    model = FAN(num_stacks=num_stacks, width=16, depth=depth, pool=pool)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def _image(size=32, batch=2, seed=1):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --- compatibility with face-alignment's checkpoint -------------------------------------------------

def test_default_state_dict_is_face_alignment_fan4():
    expected = {}
    for line in FIXTURE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, *dims = line.split()
            expected[key] = tuple(int(d) for d in dims)
    with torch.device("meta"):
        model = FAN()
    actual = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert len(expected) == 1129
    assert actual.keys() - expected.keys() == set() and expected.keys() - actual.keys() == set()
    assert actual == expected


def test_strict_save_load_round_trip():
    model = _tiny()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = FAN(num_stacks=2, width=16, depth=2).eval()
    fresh.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    x = _image()
    for a, b in zip(model(x), fresh(x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_old_checkpoint_without_num_batches_tracked_loads_strictly():
    # Checkpoints saved before torch 0.4.1 have no num_batches_tracked and no version metadata.
    state = {k: v for k, v in _tiny().state_dict().items() if not k.endswith("num_batches_tracked")}
    FAN(num_stacks=2, width=16, depth=2).load_state_dict(state, strict=True)


def test_truncate_stacks_takes_the_first_stacks_of_a_deeper_fan():
    deep = _tiny(num_stacks=3)
    shallow = FAN(num_stacks=2, width=16, depth=2).eval()
    shallow.load_state_dict(truncate_stacks(deep.state_dict(), 2), strict=True)
    x = _image()
    deep_maps, shallow_maps = deep(x), shallow(x)
    for a, b in zip(deep_maps[:2], shallow_maps):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="fewer than num_stacks=4"):
        truncate_stacks(deep.state_dict(), 4)


# --- forward -----------------------------------------------------------------------------------------

def test_heatmap_and_feature_shapes_at_256():
    model = FAN(num_stacks=2, width=16, depth=4).eval()
    x = _image(256, batch=2)
    out = model(x, return_features=True)
    assert isinstance(out, FANOutput)
    assert [tuple(h.shape) for h in out.heatmaps] == [(2, 68, 64, 64)] * 2
    resolutions = [(2, 16, r, r) for r in (64, 32, 16, 8, 4)]
    for taps in (out.high_to_low, out.low_to_high):
        assert len(taps) == 2
        assert all([tuple(t.shape) for t in stack] == resolutions for stack in taps)
    plain = model(x)
    assert isinstance(plain, list)
    for a, b in zip(plain, out.heatmaps):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _record(model, names):
    """Forward hooks keeping each named submodule's input and output."""
    seen, handles = {}, []
    for name in names:
        module = model.get_submodule(name)

        def hook(_, args, output, name=name):
            seen[name] = (args[0], output[0] if isinstance(output, tuple) else output)

        handles.append(module.register_forward_hook(hook))
    return seen, handles


def test_feature_taps_are_the_hourglass_tensors():
    model = _tiny(num_stacks=2, depth=3)
    blocks = [f"m1.b1_{level}" for level in (3, 2, 1)] + ["m1.b2_plus_1"] + [f"m1.b3_{level}" for level in (3, 2, 1)]
    seen, handles = _record(model, blocks + ["m1"])
    out = model(_image(64), return_features=True)
    for h in handles:
        h.remove()
    h2l, l2h = out.high_to_low[1], out.low_to_high[1]
    # High-to-low: the skip branches b1_3, b1_2, b1_1, then the bottleneck b2_plus_1.
    for tap, name in zip(h2l, blocks[:4]):
        assert tap is seen[name][1]
    # Low-to-high: b3_1's output at the bottom, and at every level skip + upsample(b3 of that level).
    assert l2h[-1] is seen["m1.b3_1"][1]
    for k, level in enumerate((3, 2, 1)):
        up = F.interpolate(seen[f"m1.b3_{level}"][1], scale_factor=2, mode="nearest")
        torch.testing.assert_close(l2h[k], h2l[k] + up, rtol=0, atol=0)
    assert l2h[0] is seen["m1"][1]  # the top sum is the hourglass output


@pytest.mark.parametrize("pool,reference", [("avg", F.avg_pool2d), ("max", F.max_pool2d)])
def test_hourglass_and_stem_downsample_with_the_chosen_pooling(pool, reference):
    model = _tiny(num_stacks=1, depth=2, pool=pool)
    seen, handles = _record(model, ["m0", "m0.b2_2", "m0.b2_1", "conv2", "conv3"])
    model(_image(32))
    for h in handles:
        h.remove()
    torch.testing.assert_close(seen["m0.b2_2"][0], reference(seen["m0"][0], 2, stride=2), rtol=0, atol=0)
    torch.testing.assert_close(seen["m0.b2_1"][0], reference(seen["m0.b2_2"][1], 2, stride=2), rtol=0, atol=0)
    torch.testing.assert_close(seen["conv3"][0], reference(seen["conv2"][1], 2, stride=2), rtol=0, atol=0)


def test_stacks_feed_forward_as_face_alignment():
    model = _tiny(num_stacks=2)
    seen, handles = _record(model, ["m0", "m1", "bn_end0", "bn_end1"])
    heatmaps = model(_image())
    for h in handles:
        h.remove()
    ll0 = F.relu(seen["bn_end0"][1])
    torch.testing.assert_close(heatmaps[0], model.l0(ll0))
    torch.testing.assert_close(heatmaps[1], model.l1(F.relu(seen["bn_end1"][1])))
    torch.testing.assert_close(seen["m1"][0], seen["m0"][0] + model.bl0(ll0) + model.al0(heatmaps[0]))
    assert not hasattr(model, "bl1") and not hasattr(model, "al1")


def test_backward_reaches_every_parameter():
    model = FAN(num_stacks=2, width=16, depth=2).train()
    out = model(_image(), return_features=True)
    loss = sum(h.square().mean() for h in out.heatmaps) + out.high_to_low[0][1].mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("kwargs,match", [
    (dict(width=12), "width must be a positive multiple of 8"),
    (dict(num_stacks=0), "num_stacks must be >= 1"),
    (dict(depth=0), "depth must be >= 1"),
    (dict(pool="mean"), "pool must be one of"),
])
def test_bad_configuration_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FAN(**kwargs)


def test_bad_input_is_named():
    model = FAN(num_stacks=1, width=16, depth=2)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.rand(2, 3, 40, 32))
    with pytest.raises(TypeError, match="floating point"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))


# --- landmark decoding ------------------------------------------------------------------------------

def _peak(row, col, neighbours=(), size=16, dtype=torch.float32):
    """One (1, 1, size, size) map: 1 at (row, col), and value 0.5 at the given (dr, dc) offsets."""
    hm = torch.zeros(1, 1, size, size, dtype=dtype)
    hm[0, 0, row, col] = 1.0
    for dr, dc in neighbours:
        hm[0, 0, row + dr, col + dc] = 0.5
    return hm


@pytest.mark.parametrize("row,col,neighbours,expected", [
    (5, 9, (), (9.5, 5.5)),                          # symmetric neighbours: pixel centre
    (5, 9, [(0, 1)], (9.75, 5.5)),                   # right higher: +x quarter
    (5, 9, [(0, -1)], (9.25, 5.5)),                  # left higher: −x quarter
    (5, 9, [(1, 0)], (9.5, 5.75)),                   # below higher: +y quarter
    (5, 9, [(-1, 0), (0, 1)], (9.75, 5.25)),         # both axes move independently
    (0, 9, [(0, 1)], (9.5, 0.5)),                    # on the border: no shift at all
    (5, 15, [(0, -1)], (15.5, 5.5)),
])
def test_decode_known_answers(row, col, neighbours, expected):
    points = decode_landmarks(_peak(row, col, neighbours))
    torch.testing.assert_close(points, torch.tensor([[expected]]))


def test_decode_takes_the_first_maximum_and_keeps_dtype():
    hm = torch.zeros(2, 3, 8, 8, dtype=torch.float64)
    hm[:, :, 2, 6] = 1.0
    hm[:, :, 4, 1] = 1.0  # a later tie is ignored
    points = decode_landmarks(hm)
    assert points.shape == (2, 3, 2) and points.dtype == torch.float64
    assert torch.equal(points, torch.tensor([6.5, 2.5], dtype=torch.float64).expand(2, 3, 2))
    assert decode_landmarks(torch.zeros(0, 68, 64, 64)).shape == (0, 68, 2)


def _face_alignment_inverse(point, centre, scale, resolution):
    """face-alignment's ``transform(point, centre, scale, resolution, invert=True)`` without the int cast."""
    h = 200.0 * scale
    t = torch.eye(3, dtype=torch.float64)
    t[0, 0] = t[1, 1] = resolution / h
    t[0, 2] = resolution * (-centre[0] / h + 0.5)
    t[1, 2] = resolution * (-centre[1] / h + 0.5)
    return (torch.linalg.inv(t) @ torch.tensor([point[0], point[1], 1.0], dtype=torch.float64))[:2]


def test_decode_to_image_coordinates_is_the_crop_transform():
    hm = torch.cat([_peak(31, 31, size=64), _peak(10, 50, [(0, 1)], size=64)]).double()
    centres = torch.tensor([[100.0, 200.0], [321.3, 87.9]], dtype=torch.float64)
    scales = torch.tensor([1.0, 1.37], dtype=torch.float64)
    points = decode_landmarks(hm, centres, scales)
    # Known answer: (31.5, 31.5) on a 64² map of a 200-pixel crop centred at (100, 200).
    torch.testing.assert_close(points[0, 0], torch.tensor([98.4375, 198.4375], dtype=torch.float64))
    heat = decode_landmarks(hm)
    for b in range(2):
        expected = _face_alignment_inverse(heat[b, 0], centres[b], scales[b].item(), 64)
        torch.testing.assert_close(points[b, 0], expected)
    truncated = decode_landmarks(hm, centres, scales, truncate=True)
    assert torch.equal(truncated[0, 0], torch.tensor([98.0, 198.0], dtype=torch.float64))
    # face-alignment casts to int32: toward zero, also for points left of / above the image.
    negative = decode_landmarks(_peak(0, 0, size=64), (0.0, 0.0), 1.0, truncate=True)
    assert torch.equal(negative, torch.tensor([[[-98.0, -98.0]]]))


def test_decode_bad_input_is_named():
    hm = torch.rand(2, 68, 64, 64)
    with pytest.raises(ValueError, match=r"\(B, N, H, W\)"):
        decode_landmarks(hm[0])
    with pytest.raises(TypeError, match="floating point"):
        decode_landmarks(hm.long())
    with pytest.raises(ValueError, match="both centre and scale"):
        decode_landmarks(hm, centre=(1.0, 2.0))
    with pytest.raises(ValueError, match=r"centre must have shape \(2,\) or \(2, 2\)"):
        decode_landmarks(hm, torch.zeros(3, 2), 1.0)
    with pytest.raises(ValueError, match="scale must be > 0"):
        decode_landmarks(hm, (1.0, 2.0), 0.0)
