"""model.weights_prefix: a backbone-only file (insightface's backbone.pth layout) loaded into a model's sub-module."""
import pytest
import torch

from pyfacex.backbones.iresnet import IResNet
from pyfacex.models.lfenet import LFENet
from pyfacex.train.checkpoint import load_model_weights
from pyfacex.train.config import ModelConfig

TINY = dict(layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), num_features=32, input_size=32)


def tiny_lfenet(seed: int) -> LFENet:
    torch.manual_seed(seed)
    return LFENet(IResNet(**TINY), num_classes=5)


def test_backbone_file_loads_into_the_backbone_only(tmp_path):
    torch.manual_seed(1)
    pretrained = IResNet(**TINY)
    torch.save(pretrained.state_dict(), tmp_path / "backbone.pth")
    model = tiny_lfenet(seed=2)
    lit_before = {k: v.clone() for k, v in model.lit.state_dict().items()}
    load_model_weights(model, ModelConfig(weights=str(tmp_path / "backbone.pth"), weights_prefix="backbone"))
    for key, value in pretrained.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    for key, value in model.lit.state_dict().items():
        assert torch.equal(value, lit_before[key]), key
    # Without the prefix the same file does not fit the whole LFENet (its keys lack backbone.*).
    with pytest.raises(ValueError, match="model.weights"):
        load_model_weights(tiny_lfenet(seed=2), ModelConfig(weights=str(tmp_path / "backbone.pth")))


def test_unknown_prefix_lists_the_submodules(tmp_path):
    torch.save(IResNet(**TINY).state_dict(), tmp_path / "backbone.pth")
    with pytest.raises(ValueError, match=r"weights_prefix: LFENet has no sub-module 'trunk'.*backbone.*lit"):
        load_model_weights(tiny_lfenet(0), ModelConfig(weights=str(tmp_path / "backbone.pth"), weights_prefix="trunk"))


def test_no_weights_loads_nothing():
    model = tiny_lfenet(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    load_model_weights(model, ModelConfig(weights_prefix="backbone"))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
