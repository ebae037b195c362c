"""iResNet variant="adaface": AdaFace's IR (subsampling shortcut where the width is kept, features
without affine parameters); everything else as arcface_torch."""
import pytest
import torch

from pyfacex.backbones.iresnet import IBasicBlock, IResNet, iresnet50, irse50

TINY = {"layers": (2, 1, 1, 1), "widths": (8, 16, 24, 32), "num_features": 16, "input_size": 32}


def test_state_dict_differs_from_arcface_by_exactly_adafaces_two_differences():
    arcface = set(IResNet(**TINY).state_dict())
    adaface = set(IResNet(**TINY, variant="adaface").state_dict())
    assert arcface - adaface == {"layer1.0.downsample.0.weight", *{f"layer1.0.downsample.1.{k}" for k in
                                 ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")},
                                 "features.weight", "features.bias"}
    assert adaface <= arcface


def test_standard_depth_keeps_conv_shortcuts_where_stages_widen():
    with torch.device("meta"):
        model = iresnet50(variant="adaface")
    assert model.layer1[0].downsample is None and model.layer1[0].shortcut_stride == 2
    for stage in model.stage_modules[1:]:
        assert stage[0].downsample is not None and stage[0].shortcut_stride == 1
    assert all(block.downsample is None and block.shortcut_stride == 1
               for stage in model.stage_modules for block in stage[1:])
    assert not model.features.affine and model.features.weight is None
    assert "variant='adaface'" in repr(model)


@pytest.mark.parametrize("size", [16, 15])
def test_subsampling_shortcut_is_maxpool_1_stride_2(size):
    block = IBasicBlock(8, 8, stride=2, subsample_shortcut=True).eval()
    with torch.no_grad():   # silence the residual branch: the block is its shortcut alone
        block.bn3.weight.zero_()
        block.bn3.bias.zero_()
    x = torch.randn(2, 8, size, size, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.max_pool2d(x, kernel_size=1, stride=2)
    with torch.no_grad():
        out = block(x)
    assert out.shape == (2, 8, (size + 1) // 2, (size + 1) // 2)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_subsampling_applies_only_where_the_width_is_kept():
    widening = IBasicBlock(8, 16, stride=2, subsample_shortcut=True)
    assert widening.downsample is not None and widening.shortcut_stride == 1
    assert IBasicBlock(8, 8, stride=2).downsample is not None   # arcface_torch's


def test_features_without_affine_parameters_normalise_only():
    model = IResNet(**TINY, variant="adaface").eval()
    with torch.no_grad():
        model.features.running_mean.uniform_(-1, 1)
        model.features.running_var.uniform_(0.5, 2)
        fc = model.fc(torch.flatten(model.bn2(model(torch.randn(2, 3, 32, 32), return_feature_map=True)), 1))
        expected = (fc - model.features.running_mean) / torch.sqrt(model.features.running_var + 1e-5)
        torch.testing.assert_close(model.features(fc), expected)
    assert not any(name.startswith("features.") for name, _ in model.named_parameters())


def test_irse_and_training_work_with_the_variant():
    model = irse50(**{**TINY, "layers": (3, 4, 14, 3), "widths": (16, 16, 32, 32)}, variant="adaface")
    assert model.layer1[0].se is not None and model.layer1[0].downsample is None
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    model.train()
    model(x).square().mean().backward()
    assert model.conv1.weight.grad is not None and model.features.running_mean.abs().sum() > 0


def test_bad_variant_is_named():
    with pytest.raises(ValueError, match="variant must be one of arcface, adaface, got 'evolve'"):
        IResNet(**TINY, variant="evolve")
