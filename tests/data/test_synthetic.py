"""The synthetic face world: determinism, ground truth that matches the pixels, nuisance control."""
import pytest
import torch

from pyfacex.data.synthetic import FACTORS, OCCLUDERS, TEST_IDENTITY_OFFSET, Nuisance, SyntheticFaceWorld
from pyfacex.data.synthetic.nuisance import sample_nuisance
from pyfacex.data.synthetic.random import make_key, uniform

CLEAN = Nuisance(difficulty=0.0)


def ids(*values):
    return torch.tensor(values, dtype=torch.int64)


def luminance(images: torch.Tensor) -> torch.Tensor:
    return (images.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)


def test_counter_random_is_a_pure_function_of_its_key():
    keys = make_key(7, torch.arange(5))
    assert torch.equal(uniform(keys, "s", 3)[2], uniform(make_key(7, torch.tensor([2])), "s", 3)[0])
    assert not torch.equal(uniform(keys, "s", 3), uniform(keys, "t", 3))
    many = uniform(make_key(0, torch.arange(20000)), "u", 1)
    assert abs(many.mean().item() - 0.5) < 0.01 and many.min() >= 0 and many.max() < 1


def test_same_seed_same_image_whatever_the_batch():
    world = SyntheticFaceWorld(seed=3, nuisance=Nuisance(difficulty=0.8), chunk=2)
    alone = world.render(ids(5), ids(2))
    together = world.render(ids(1, 9, 5), ids(0, 4, 2))
    assert torch.equal(alone.images[0], together.images[2])
    assert torch.equal(alone.landmarks[0], together.landmarks[2])
    again = SyntheticFaceWorld(seed=3, nuisance=Nuisance(difficulty=0.8)).render(ids(5), ids(2))
    assert torch.equal(alone.images, again.images)
    other_seed = SyntheticFaceWorld(seed=4, nuisance=Nuisance(difficulty=0.8)).render(ids(5), ids(2))
    assert not torch.equal(alone.images, other_seed.images)


def test_shapes_ranges_and_empty_batch():
    world = SyntheticFaceWorld(size=64)
    batch = world.render(ids(0, 1, 2), 0)
    assert batch.images.shape == (3, 3, 64, 64) and batch.images.dtype == torch.uint8
    assert batch.landmarks.shape == (3, 68, 2) and batch.visible.shape == (3, 68)
    assert batch.pose.shape == (3, 3) and set(batch.nuisance) == set(FACTORS)
    empty = world.render(ids(), ids())
    assert empty.images.shape == (0, 3, 64, 64) and empty.landmarks.shape == (0, 68, 2)


def test_splits_are_identity_disjoint():
    world = SyntheticFaceWorld()
    train, test = world.identities("train", 1000), world.identities("test", 1000)
    assert not set(train.tolist()) & set(test.tolist())
    assert test.min() >= TEST_IDENTITY_OFFSET


def test_frontal_clean_faces_show_every_landmark_in_the_frame():
    world = SyntheticFaceWorld(nuisance=CLEAN)
    batch = world.render(torch.arange(8), 0, yaw=0.0)
    xs, ys = batch.landmarks[..., 0], batch.landmarks[..., 1]
    # As in insightface's crops, the chin may touch the bottom edge; everything in the frame shows.
    in_frame = (xs > -0.5) & (xs < 111.5) & (ys > -0.5) & (ys < 111.5)
    assert in_frame[:, 17:].all() and torch.equal(batch.visible, in_frame)
    # iBUG geometry: brows above eyes above nose tip above mouth above chin; left before right.
    eye_y = ys[:, 36:48].mean(1)
    assert (ys[:, 17:27].mean(1) < eye_y).all() and (eye_y < ys[:, 30]).all()
    assert (ys[:, 30] < ys[:, 48:68].mean(1)).all() and (ys[:, 48:68].mean(1) < ys[:, 8]).all()
    assert (xs[:, 0] < xs[:, 16]).all() and (xs[:, 36] < xs[:, 45]).all() and (xs[:, 48] < xs[:, 54]).all()
    # Near the arcface template: eyes at 51.6 px, mouth corners at 92.3 px, eyes 35 px apart.
    assert (eye_y - 51.6).abs().max() < 6
    assert ((xs[:, 42:48].mean(1) - xs[:, 36:42].mean(1)) - 35.2).abs().max() < 8


def test_landmarks_fall_on_the_features_they_name():
    world = SyntheticFaceWorld(size=256, nuisance=CLEAN)
    batch = world.render(torch.arange(6), 0, yaw=0.0, gaze_x=0.0, gaze_y=0.0, eye_close=0.0)
    lum = luminance(batch.images)
    for i in range(len(batch)):
        for eye in (slice(36, 42), slice(42, 48)):
            points = batch.landmarks[i, eye]
            centre = points.mean(0)
            corners = points[[0, 3]]
            # The pupil at the eye centre is darker than the sclera three quarters of the way to a corner.
            sclera = centre + 0.75 * (corners - centre)
            def value(p):
                return lum[i, int(p[1].round()), int(p[0].round())]
            assert all(value(centre) < value(s) - 30 for s in sclera), (i, eye)
        # The mouth's opening line lies on the lips, which differ from the skin below the chin line.
        mouth = batch.landmarks[i, 48:60].mean(0)
        cheek = batch.landmarks[i, 3] * 0.6 + batch.landmarks[i, 31] * 0.4
        rgb = batch.images[i].float()
        lip = rgb[:, int(mouth[1].round()), int(mouth[0].round())]
        skin = rgb[:, int(cheek[1].round()), int(cheek[0].round())]
        assert (lip - skin).abs().sum() > 15


def test_turning_the_head_hides_the_far_side():
    world = SyntheticFaceWorld(nuisance=CLEAN)
    batch = world.render(ids(0, 0), 0, yaw=torch.tensor([75.0, -75.0]))
    # Positive yaw turns the face to the image's right, away from the image-right eye (42-47).
    assert not batch.visible[0, 42:48].any() and batch.visible[0, 36:42].any()
    assert not batch.visible[1, 36:42].any() and batch.visible[1, 42:48].any()
    assert batch.visible[0, 30] and batch.visible[1, 30]   # the nose tip stays in view
    assert batch.landmarks[0, 30, 0] > batch.landmarks[1, 30, 0]
    assert torch.allclose(batch.pose[:, 0], torch.tensor([75.0, -75.0]))


def test_occluders_hide_what_they_cover():
    world = SyntheticFaceWorld(nuisance=CLEAN)
    bare = world.render(torch.arange(4), 0, yaw=0.0)
    masked = world.render(torch.arange(4), 0, yaw=0.0, occluder="mask")
    assert not masked.visible[:, 48:68].any() and masked.visible[:, 36:48].all()
    assert (masked.images.float() - bare.images.float()).abs().mean() > 2
    shades = world.render(torch.arange(4), 0, yaw=0.0, occluder=OCCLUDERS["sunglasses"])
    assert not shades.visible[:, 36:48].any() and shades.visible[:, 48:68].all()


def test_identities_differ_more_than_poses_of_one_identity():
    world = SyntheticFaceWorld(nuisance=CLEAN)
    people = torch.arange(10)
    frontal = world.render(people, 0, yaw=0.0, clutter=0.0, background_hue=0.5).images.float()
    turned = world.render(people, 0, yaw=12.0, clutter=0.0, background_hue=0.5).images.float()
    centre = (slice(None), slice(None), slice(20, 100), slice(20, 92))
    same = (frontal - turned)[centre].abs().mean((1, 2, 3))
    other = (frontal - frontal.roll(1, 0))[centre].abs().mean((1, 2, 3))
    assert (same < other).float().mean() >= 0.9, (same, other)


def test_overrides_fix_factors_and_knobs_rescale():
    world = SyntheticFaceWorld()
    yaw = torch.linspace(-40, 40, 5)
    batch = world.render(torch.arange(5), 0, yaw=yaw, resolution=20.0, jpeg_quality=30.0)
    assert torch.equal(batch.pose[:, 0], yaw)
    assert (batch.nuisance["resolution"] == 20).all() and (batch.nuisance["jpeg_quality"] == 30).all()
    calm = world.render(torch.arange(64), 1, difficulty=0.0)
    wild = world.render(torch.arange(64), 1, difficulty=1.0)
    assert calm.pose.abs().max() == 0 and wild.pose[:, 0].abs().mean() > 10
    # Low resolution removes fine detail: the second differences along rows shrink.
    sharp = world.render(torch.arange(4), 0, difficulty=0.0).images.float()
    blurry = world.render(torch.arange(4), 0, difficulty=0.0, resolution=14.0).images.float()
    def detail(im):
        return (im[..., 2:] - 2 * im[..., 1:-1] + im[..., :-2]).abs().mean()
    assert detail(blurry) < 0.5 * detail(sharp)


def test_nuisance_difficulty_zero_is_clean():
    values = sample_nuisance(make_key(0, torch.arange(100)), CLEAN, 112)
    for name in ("yaw", "pitch", "roll", "blur", "motion_blur", "noise", "occluder", "mouth_open", "eye_close"):
        assert (values[name] == 0).all(), name
    assert (values["resolution"] == 112).all() and (values["jpeg_quality"] == 100).all()


def test_video_frames_drift_smoothly_with_a_fixed_scene():
    world = SyntheticFaceWorld(nuisance=Nuisance(difficulty=0.6, noise=0.0, motion_blur=0.0, blur=0.0))
    video = world.video(3, 1, 24)
    assert len(video) == 24 and torch.equal(video.sample, torch.arange(24))
    assert (video.identity == 3).all()
    step = video.pose[1:] - video.pose[:-1]
    stills = world.render(ids(*([3] * 24)), torch.arange(24)).pose
    assert step.abs().max() < (stills[1:] - stills[:-1]).abs().mean()
    for name in ("occluder", "background_hue", "light_strength"):
        assert (video.nuisance[name] == video.nuisance[name][0]).all(), name
    assert torch.equal(world.video(3, 1, 24).images, video.images)
    assert not torch.equal(world.video(3, 2, 24).images, video.images)


@pytest.mark.parametrize("call, message", [
    (lambda: SyntheticFaceWorld(size=8), "size"),
    (lambda: SyntheticFaceWorld(framing="portrait"), "framing"),
    (lambda: SyntheticFaceWorld(seed=-1), "seed"),
    (lambda: Nuisance(blur=-1.0), "Nuisance.blur"),
    (lambda: Nuisance(difficulty=2.0), "Nuisance.difficulty"),
    (lambda: SyntheticFaceWorld().render(ids(0), 0, tilt=3.0), "tilt"),
    (lambda: SyntheticFaceWorld().render(ids(0, 1), 0, yaw=torch.zeros(3)), "yaw"),
    (lambda: SyntheticFaceWorld().render(ids(0), 0, occluder="scarf"), "occluder"),
    (lambda: SyntheticFaceWorld().render(ids(0), 0, occluder=9), "occluder"),
    (lambda: SyntheticFaceWorld().identities("val", 3), "split"),
    (lambda: SyntheticFaceWorld().video(0, 0, 0), "num_frames"),
])
def test_bad_arguments_name_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()
