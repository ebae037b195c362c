"""FAN-Face's integration layers (Sec. 3.4, Fig. 3): AdaIN, BL / SL / AL at the reduced and the wide width."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pyfacex.nn.heatmap_head import HeatmapHead
from pyfacex.nn.integration import FeatureAlign, IntegrationLayer, StageIntegration, adain


def _randomise(module):
    # Non-trivial BN affine parameters and running statistics, so the oracles check them too.
    torch.manual_seed(3)
    for sub in module.modules():
        if isinstance(sub, nn.BatchNorm2d):
            sub.weight.data.uniform_(0.5, 1.5)
            sub.bias.data.uniform_(-0.5, 0.5)
            sub.running_mean.uniform_(-0.5, 0.5)
            sub.running_var.uniform_(0.5, 1.5)
        elif isinstance(sub, nn.PReLU):
            sub.weight.data.uniform_(0.1, 0.4)
    return module.eval()


def _bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _statistics(x):
    return x.mean(dim=(2, 3)), x.std(dim=(2, 3), correction=0)


def test_adain_gives_the_content_the_style_statistics():
    content, style = torch.randn(2, 4, 5, 5) * 3 + 1, torch.randn(2, 4, 7, 7) * 0.5 - 2
    out = adain(content, style)
    for got, want in zip(_statistics(out), _statistics(style)):
        torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("mix_width", [3, None])
def test_basic_layer_is_fig3(mix_width):
    # Oracle written from Fig. 3 with the layer's own weights: x' = conv(BN(resize(x))); y' (reduced to
    # the mixing width when there is one) takes x''s instance statistics; cat → 1×1 conv → BN → PReLU.
    align = _randomise(FeatureAlign(16, mix_width or 8))
    layer = _randomise(IntegrationLayer(8, "BL", mix_width=mix_width))
    x, y = torch.randn(2, 16, 8, 8), torch.randn(2, 8, 6, 6)
    x_aligned = align(x, (6, 6))
    resized = F.interpolate(x, size=(6, 6), mode="bilinear", align_corners=False)
    expected_x = F.conv2d(_bn(resized, align.bn), align.conv.weight)
    torch.testing.assert_close(x_aligned, expected_x)
    reduced = y if mix_width is None else F.conv2d(y, layer.reduce.weight)
    mean, std = _statistics(expected_x)
    own_mean, own_std = _statistics(reduced)
    styled = ((reduced - own_mean[..., None, None]) / (own_std[..., None, None] ** 2 + 1e-5).sqrt()
              * (std[..., None, None] ** 2 + 1e-5).sqrt() + mean[..., None, None])
    mixed = _bn(F.conv2d(torch.cat([expected_x, styled], 1), layer.mix[0].weight), layer.mix[1])
    expected = F.prelu(mixed, layer.act.weight)
    torch.testing.assert_close(layer(x_aligned, y), expected, atol=1e-5, rtol=1e-4)


def test_simple_layer_adds_and_only_the_reduced_reading_convolves_back_to_c_y():
    wide, reduced = IntegrationLayer(8, "SL", mix_width=None), IntegrationLayer(8, "SL", mix_width=2)
    assert wide.mix is None and wide.reduce is None
    assert [p.shape for p in wide.parameters()] == [torch.Size([8])]  # the PReLU only
    _randomise(wide)
    x, y = torch.randn(2, 8, 5, 5), torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(wide(x, y), F.prelu(x + adain(y, x), wide.act.weight))
    assert reduced.mix[0].weight.shape == (8, 2, 1, 1)  # the sum (2 channels) back to C_y = 8


@pytest.mark.parametrize("mix_width, mid", [(None, 4), (3, 3)])
def test_advanced_layer_replaces_the_second_conv_by_a_bottleneck(mix_width, mid):
    layer = IntegrationLayer(16, "AL", mix_width=mix_width)
    convs = [m for m in layer.mix if isinstance(m, nn.Conv2d)]
    width = mix_width or 16
    assert [tuple(c.weight.shape) for c in convs] == [(mid, 2 * width, 1, 1), (mid, mid, 3, 3), (16, mid, 1, 1)]
    out = layer(torch.randn(2, width, 5, 5), torch.randn(2, 16, 5, 5))
    assert out.shape == (2, 16, 5, 5)


@pytest.mark.parametrize("kind", ["BL", "SL", "AL"])
def test_adain_direction_matters(kind):
    torch.manual_seed(0)
    layer = _randomise(IntegrationLayer(8, kind, mix_width=4))
    other = _randomise(IntegrationLayer(8, kind, adain="x", mix_width=4))
    other.load_state_dict(layer.state_dict())
    x, y = torch.randn(2, 4, 6, 6), torch.randn(2, 8, 6, 6)
    assert not torch.allclose(other(x, y), layer(x, y), atol=1e-4)


def test_stage_integration_adds_gamma_times_f_after_each_point_block():
    torch.manual_seed(0)
    blocks = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1))
    stage = _randomise(StageIntegration(3, (0, 2), x_channels=6, y_channels=4, mix_width=2, gamma_init=0.5))
    with torch.no_grad():
        stage.gamma.copy_(torch.tensor([0.3, -0.7]))
    x, y = torch.randn(2, 6, 8, 8), torch.randn(2, 4, 5, 5)
    aligned = stage.align(x, (5, 5))
    expected = blocks[0](y)
    expected = expected + 0.3 * stage.layers[0](aligned, expected)
    expected = blocks[2](blocks[1](expected))
    expected = expected + (-0.7) * stage.layers[1](aligned, expected)
    torch.testing.assert_close(stage(blocks, x, y), expected)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="kind must be one of"):
        IntegrationLayer(8, "XL")
    with pytest.raises(ValueError, match="mix_width must be a positive int.*got 0"):
        IntegrationLayer(8, mix_width=0)
    with pytest.raises(ValueError, match="points must be increasing block indices in 0..1, got \\(2,\\)"):
        StageIntegration(2, (2,), 6, 4)
    with pytest.raises(ValueError, match="x_aligned must have 4 channels"):
        IntegrationLayer(8, mix_width=4)(torch.randn(1, 8, 3, 3), torch.randn(1, 8, 3, 3))
    with pytest.raises(ValueError, match="blocks must be the stage's 2 blocks, got 1"):
        StageIntegration(2, (1,), 6, 4)(nn.Sequential(nn.Identity()), torch.randn(1, 6, 4, 4), torch.randn(1, 4, 4, 4))
    with pytest.raises(ValueError, match="upsamplings must be an int >= 0"):
        HeatmapHead(8, 51, upsamplings=-1)


def test_heatmap_head_upsamples_by_two_per_transposed_conv():
    head = HeatmapHead(8, 51, channels=4, upsamplings=3)
    assert head(torch.randn(2, 8, 7, 7)).shape == (2, 51, 56, 56)
