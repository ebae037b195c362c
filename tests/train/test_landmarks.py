"""FAN landmark training (pyfacex.train.landmarks): heatmap targets, mirror permutation, NME, the trainer."""
import json

import pytest
import torch

from pyfacex.data.synthetic import Nuisance, SyntheticFaceWorld
from pyfacex.data.synthetic.export import write_training_set
from pyfacex.train import config_from_dict, create_trainer, load_model
from pyfacex.train.landmarks import (
    IBUG_MIRROR,
    LandmarkCollate,
    LandmarkDataset,
    LandmarkTrainer,
    decode_to_image,
    flip_landmarks,
    heatmap_targets,
    load_fan,
    normalised_mean_error,
)

SIZE = 64  # the tiny FAN below (depth 2) takes multiples of 16: 64×64 faces, 16×16 heatmaps
TINY_FAN = {"num_stacks": 2, "width": 16, "depth": 2}


def tiny_config(output, **overrides):
    values = {
        "trainer": "landmarks", "model": {"name": "fan", "kwargs": TINY_FAN},
        "data": {"batch_size": 4, "num_workers": 0, "image_size": SIZE, "augment": []},
        "landmarks": {"seed": 0, "difficulty": 0.2, "identities": 2, "per_identity": 2, "sigma": 1.0},
        "optim": {"name": "adam", "lr": 3e-3, "weight_decay": 0.0}, "schedule": {"kind": "constant"},
        "max_steps": 6, "log_every": 1, "device": "cpu", "progress": False, "output": str(output),
    }
    for key, value in overrides.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return config_from_dict(values)


@pytest.fixture(scope="module")
def landmark_set(tmp_path_factory):
    """4 identities × 2 faces at 64×64 in the landmark framing, with ground_truth.npz."""
    world = SyntheticFaceWorld(seed=0, size=SIZE, nuisance=Nuisance(difficulty=0.2), framing="landmark")
    return write_training_set(world, tmp_path_factory.mktemp("landmarks"), 4, 2, formats=("record",), progress=False)


def log_lines(output, event):
    lines = [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]
    return [line for line in lines if line["event"] == event]


# ------------------------------------------------------------------ targets, mirror, NME

@pytest.mark.parametrize("image_size, heatmap_size, sigma", [(256, 64, 1.0), (64, 16, 1.5)])
def test_heatmap_round_trip_is_within_a_quarter_heatmap_pixel(image_size, heatmap_size, sigma):
    stride = image_size / heatmap_size
    # Inside the heatmap's interior, where decode_landmarks applies its quarter-pixel shift.
    points = torch.rand(3, 68, 2, generator=torch.Generator().manual_seed(0)) * (image_size - 4 * stride) + 2 * stride
    targets = heatmap_targets(points, image_size, heatmap_size, sigma)
    assert targets.shape == (3, 68, heatmap_size, heatmap_size)
    error = (decode_to_image(targets, image_size) - points).abs()
    assert error.max() <= 0.25 * stride + 1e-4
    # A landmark exactly on a heatmap pixel centre: peak 1 there, decoded exactly.
    on_centre = torch.tensor([[[(5 + 0.5) * stride - 0.5, (7 + 0.5) * stride - 0.5]]])
    target = heatmap_targets(on_centre, image_size, heatmap_size, sigma)
    assert target[0, 0, 7, 5] == pytest.approx(1.0) and target.max() == target[0, 0, 7, 5]
    assert torch.allclose(decode_to_image(target, image_size), on_centre)


def test_mirror_permutation_maps_a_frontal_face_onto_itself():
    assert sorted(IBUG_MIRROR) == list(range(68))
    assert all(IBUG_MIRROR[IBUG_MIRROR[i]] == i for i in range(68))
    world = SyntheticFaceWorld(seed=3, size=32, nuisance=Nuisance(difficulty=0.0), framing="landmark")
    faces = world.render(world.identities("train", 3), 0, yaw=0.0, pitch=0.0, roll=0.0)
    landmarks = faces.landmarks
    assert torch.allclose(flip_landmarks(landmarks, 32), landmarks, atol=1e-3)
    # A turned head: the flip of yaw +25 has its right-eye corner (36) left of the left one (45) again.
    turned = world.render(world.identities("train", 2), 0, yaw=25.0, pitch=0.0, roll=0.0).landmarks
    flipped = flip_landmarks(turned, 32)
    assert bool((flipped[:, 36, 0] < flipped[:, 45, 0]).all())


def test_collate_flips_images_and_landmarks_together(landmark_set):
    dataset = LandmarkDataset(landmark_set)
    items = [(*dataset[i], 12345) for i in range(8)]
    plain = LandmarkCollate(SIZE)(items)
    flipped = LandmarkCollate(SIZE, flip=True)(items)
    again = LandmarkCollate(SIZE, flip=True)(items)
    assert all(torch.equal(a, b) for a, b in zip(flipped, again))  # seeded by the batch seed
    chosen = (flipped[0] != plain[0]).flatten(1).any(1)
    assert 0 < int(chosen.sum()) < 8
    assert torch.equal(flipped[0][chosen], plain[0][chosen].flip(-1))
    assert torch.allclose(flipped[1][chosen], flip_landmarks(plain[1][chosen], SIZE))
    assert torch.equal(flipped[1][~chosen], plain[1][~chosen])
    assert torch.equal(flipped[2][chosen], plain[2][chosen][:, list(IBUG_MIRROR)])
    # Resizing scales the landmarks with the pixel-centre convention.
    half = LandmarkCollate(SIZE // 2)(items)
    assert torch.allclose(half[1], (plain[1] + 0.5) / 2 - 0.5)


def test_nme_is_the_mean_distance_over_the_interocular_distance():
    target = torch.zeros(2, 68, 2)
    target[:, 45, 0] = 40.0  # outer eye corners 40 pixels apart
    predicted = target.clone()
    predicted[0, :, 0] += 4.0
    predicted[1, :10, 1] += 8.0
    assert torch.allclose(normalised_mean_error(predicted, target), torch.tensor([0.1, 8.0 * 10 / 68 / 40]))
    visible = torch.zeros(2, 68, dtype=torch.bool)
    visible[:, :10] = True
    assert torch.allclose(normalised_mean_error(predicted, target, visible), torch.tensor([0.1, 0.2]))


# ------------------------------------------------------------------ the trainer

def test_trainer_overfits_a_handful_of_faces_and_writes_a_fan_model_file(tmp_path):
    config = tiny_config(tmp_path / "run", max_steps=24, optim={"lr": 3e-2}, landmarks={"sigma": 1.5},
                         eval={"every": 12, "batch_size": 8})
    trainer = create_trainer(config)
    assert isinstance(trainer, LandmarkTrainer) and len(trainer.dataset) == 4 and len(trainer.test_dataset) == 2
    zero_loss = float(heatmap_targets(trainer.dataset.landmarks, SIZE, SIZE // 4, 1.5).pow(2).mean())
    result = trainer.fit()
    train = log_lines(tmp_path / "run", "train")
    losses, nmes = [line["loss"] for line in train], [line["nme"] for line in train]
    assert len(losses) == 24
    assert sum(losses[-3:]) / 3 < 0.5 * losses[0]
    assert losses[-1] < 0.9 * zero_loss  # better than empty heatmaps: the peaks are being learnt
    assert sum(nmes[-3:]) < 0.75 * sum(nmes[:3])
    evals = log_lines(tmp_path / "run", "eval")
    assert [e["step"] for e in evals] == [12, 24]
    assert all(0 < e["nme"] < 10 and 0 < e["nme_visible"] < 10 for e in evals)
    assert result["best"] == min(e["nme"] for e in evals)
    # The model file rebuilds the FAN, and load_fan reads it for FAN-Face.
    model, info = load_model(tmp_path / "run" / "model.pt")
    assert info["name"] == "fan" and info["image_size"] == SIZE
    fan = load_fan(tmp_path / "run" / "model.pt")
    for key, value in trainer.modules["model"].state_dict().items():
        assert torch.equal(model.state_dict()[key], value) and torch.equal(fan.state_dict()[key], value)
    assert (tmp_path / "run" / "best_model.pt").is_file()


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path, landmark_set):
    overrides = dict(max_steps=6, checkpoint_every=2, keep_checkpoints=10, data={"train": str(landmark_set),
                     "augment": ["flip"], "batch_size": 2}, eval={"every": 3})
    a = create_trainer(tiny_config(tmp_path / "a", **overrides))
    a.fit()
    b = create_trainer(tiny_config(tmp_path / "b", **overrides))
    b.fit(resume=tmp_path / "a" / "checkpoints" / "step_00000004")
    assert b.step == a.step == 6 and b.best == a.best
    for name, module in a.modules.items():
        for key, value in module.state_dict().items():
            assert torch.equal(b.modules[name].state_dict()[key], value), f"{name}.{key}"


def test_face_alignment_state_dicts_load_with_their_architecture(tmp_path):
    from pyfacex.backbones.fan import FAN

    torch.manual_seed(0)
    fan = FAN(num_stacks=3, width=16, depth=2)
    torch.save({"state_dict": fan.state_dict()}, tmp_path / "2dfan.pth.tar")
    loaded = load_fan(tmp_path / "2dfan.pth.tar")
    assert (loaded.num_stacks, loaded.width, loaded.depth, loaded.num_landmarks) == (3, 16, 2, 68)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in fan.state_dict().items())
    with pytest.raises(ValueError, match="neither a pyfacex FAN model file nor a FAN state_dict"):
        torch.save({"weight": torch.zeros(1)}, tmp_path / "other.pt")
        load_fan(tmp_path / "other.pt")


def test_bad_configs_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="data.image_size.*multiple of 16"):
        create_trainer(tiny_config(tmp_path, data={"image_size": 56}))
    with pytest.raises(ValueError, match="model.name.*fan"):
        create_trainer(tiny_config(tmp_path, model={"name": "iresnet18"}))
    with pytest.raises(ValueError, match="eval.protocols"):
        create_trainer(tiny_config(tmp_path, eval={"protocols": ["lfw=/nowhere"]}))
    with pytest.raises(ValueError, match="data.on_error.*does not skip"):
        create_trainer(tiny_config(tmp_path, data={"on_error": "skip"}))
