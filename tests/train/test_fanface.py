"""The FAN-Face trainer (pyfacex.train.fanface): the FAN from a landmark run's file stays frozen."""
import pytest
import torch

from pyfacex.backbones.fan import FAN
from pyfacex.data.synthetic import Nuisance, SyntheticFaceWorld
from pyfacex.data.synthetic.export import write_training_set
from pyfacex.models.fanface import FANFace
from pyfacex.train import config_from_dict, create_trainer, load_model
from pyfacex.train.fanface import FANFaceTrainer
from pyfacex.train.landmarks import load_fan

FRN = {"layers": [1, 1, 1, 1], "widths": [8, 8, 16, 16], "num_features": 16, "input_size": 32}
FAN_KWARGS = {"num_stacks": 2, "width": 16, "depth": 2}


@pytest.fixture(scope="module")
def fan_file(tmp_path_factory):
    """The model.pt of a 2-step `landmarks` run of a tiny 2-stack FAN on 64×64 faces."""
    output = tmp_path_factory.mktemp("landmark_run")
    config = config_from_dict({
        "trainer": "landmarks", "model": {"name": "fan", "kwargs": FAN_KWARGS},
        "data": {"batch_size": 2, "num_workers": 0, "image_size": 64, "augment": []},
        "landmarks": {"identities": 2, "per_identity": 1}, "optim": {"name": "adam", "lr": 1e-2},
        "max_steps": 2, "device": "cpu", "progress": False, "output": str(output)})
    create_trainer(config).fit()
    return output / "model.pt"


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """6 identities × 4 faces at 32×32 (the FRN's input size)."""
    world = SyntheticFaceWorld(seed=0, size=32, nuisance=Nuisance(difficulty=0.2))
    return write_training_set(world, tmp_path_factory.mktemp("faces"), 6, 4, formats=("record",), progress=False)


def fanface_config(output, faces, fan_file=None, **overrides):
    kwargs = {"frn_kwargs": FRN, "fan_size": 64, **({"fan_weights": str(fan_file)} if fan_file else {})}
    values = {
        "trainer": "fanface", "model": {"name": "fanface_r34_h2_11_bl_h2l2", "kwargs": kwargs},
        "data": {"train": str(faces), "batch_size": 8, "num_workers": 0, "image_size": 32},
        "head": {"kind": "arcface", "s": 16.0}, "optim": {"lr": 0.05}, "schedule": {"kind": "constant"},
        "max_steps": 3, "device": "cpu", "progress": False, "output": str(output),
    }
    for key, value in overrides.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return config_from_dict(values)


def test_the_fan_stays_frozen_while_the_frn_learns(tmp_path, faces, fan_file):
    trainer = create_trainer(fanface_config(tmp_path / "run", faces, fan_file))
    assert isinstance(trainer, FANFaceTrainer)
    model = trainer.modules["model"]
    assert isinstance(model, FANFace) and model.fan.num_stacks == 2
    fan_state = load_fan(fan_file).state_dict()
    assert all(torch.equal(model.fan.state_dict()[k], v) for k, v in fan_state.items())  # loaded from the file
    optimised = {id(p) for opt in trainer.optimizers.values() for group in opt.param_groups for p in group["params"]}
    assert not any(id(p) in optimised for p in model.fan.parameters())
    # (iResNet's `features` BN weight is fixed at 1 as insightface's, so it is not optimised either.)
    assert all(id(p) in optimised for p in model.frn.parameters() if p.requires_grad)
    assert all(id(p) in optimised for p in model.integration.parameters())
    frn_before = {k: v.clone() for k, v in model.frn.state_dict().items()}
    trainer.fit()
    # Parameters and BatchNorm statistics of the FAN: untouched; the FRN's weights: trained.
    assert all(torch.equal(model.fan.state_dict()[k], v) for k, v in fan_state.items())
    assert not torch.equal(model.frn.state_dict()["conv1.weight"], frn_before["conv1.weight"])
    assert not torch.equal(model.frn.state_dict()["bn1.running_mean"], frn_before["bn1.running_mean"])
    # The model file stands alone: fan_kwargs, no fan_weights; it rebuilds the trained model.
    fan_file.rename(fan_file.with_suffix(".moved"))
    try:
        loaded, info = load_model(tmp_path / "run" / "model.pt")
    finally:
        fan_file.with_suffix(".moved").rename(fan_file)
    assert "fan_weights" not in info["kwargs"] and info["kwargs"]["fan_kwargs"]["num_stacks"] == 2
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(images), model.eval()(images))


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path, faces, fan_file):
    overrides = dict(max_steps=4, checkpoint_every=2, keep_checkpoints=10)
    a = create_trainer(fanface_config(tmp_path / "a", faces, fan_file, **overrides))
    a.fit()
    b = create_trainer(fanface_config(tmp_path / "b", faces, fan_file, **overrides))
    b.fit(resume=tmp_path / "a" / "checkpoints" / "step_00000002")
    for name, module in a.modules.items():
        for key, value in module.state_dict().items():
            assert torch.equal(b.modules[name].state_dict()[key], value), f"{name}.{key}"


def test_missing_or_wrong_fan_weights_raise_clearly(tmp_path, faces, fan_file):
    with pytest.raises(ValueError, match="FAN-Face needs trained landmark weights: model.kwargs.fan_weights"):
        create_trainer(fanface_config(tmp_path, faces))
    with pytest.raises(FileNotFoundError, match="model.kwargs.fan_weights"):
        create_trainer(fanface_config(tmp_path, faces, tmp_path / "nowhere.pt"))
    with pytest.raises(ValueError, match="fan_stacks.*1..2"):
        create_trainer(fanface_config(tmp_path, faces, fan_file, model={"kwargs": {
            "frn_kwargs": FRN, "fan_size": 64, "fan_weights": str(fan_file), "fan_stacks": 3}}))
    with pytest.raises(ValueError, match="model.kwargs.fan_kwargs"):
        create_trainer(fanface_config(tmp_path, faces, fan_file, model={"kwargs": {
            "frn_kwargs": FRN, "fan_size": 64, "fan_weights": str(fan_file), "fan_kwargs": FAN_KWARGS}}))


def test_fan_stacks_keeps_the_first_hourglasses_of_a_face_alignment_checkpoint(tmp_path, faces):
    torch.manual_seed(0)
    fan = FAN(num_stacks=3, **{k: v for k, v in FAN_KWARGS.items() if k != "num_stacks"})
    torch.save(fan.state_dict(), tmp_path / "2dfan3.pth")
    kwargs = {"frn_kwargs": FRN, "fan_size": 64, "fan_weights": str(tmp_path / "2dfan3.pth"), "fan_stacks": 2}
    trainer = create_trainer(fanface_config(tmp_path / "run", faces, model={"kwargs": kwargs}))
    cut = trainer.modules["model"].fan
    assert cut.num_stacks == 2 and torch.equal(cut.m1.b1_2.conv1.weight, fan.m1.b1_2.conv1.weight)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(cut(x)[1], fan.eval()(x)[1])
    assert trainer.export()[1]["fan_kwargs"]["num_stacks"] == 2 and "fan_stacks" not in trainer.export()[1]


def test_the_multitask_baseline_trains_arcface_plus_a_tenth_of_the_heatmap_l2(tmp_path, faces, fan_file):
    kwargs = {"frn_kwargs": FRN, "fan_size": 64, "fan_weights": str(fan_file), "heatmap_head_channels": 8}
    trainer = create_trainer(fanface_config(tmp_path / "run", faces, model={"name": "fanface_r34_multitask",
                                                                            "kwargs": kwargs}))
    model, head = trainer.modules["model"], trainer.modules["head"]
    assert model.config.multitask and model.heatmap_loss_weight == 0.1
    images, labels = torch.rand(4, 3, 32, 32) * 2 - 1, torch.tensor([0, 1, 2, 3])
    losses = trainer.forward_loss((images, labels))
    embedding, heatmap_loss = model(images, return_heatmap_loss=True)
    torch.testing.assert_close(losses["heatmap_loss"], heatmap_loss)
    torch.testing.assert_close(losses["loss"], head(embedding, labels) + 0.1 * heatmap_loss)
    head_before = {k: v.clone() for k, v in model.heatmap_head.state_dict().items()}
    trainer.fit()
    assert not torch.equal(model.heatmap_head.state_dict()["layers.0.weight"], head_before["layers.0.weight"])
    loaded, _ = load_model(tmp_path / "run" / "model.pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model.eval()(images))
