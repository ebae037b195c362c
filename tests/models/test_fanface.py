"""FAN-Face (fanface.md Sec. 3): variant strings, frozen FAN, heatmap stacking, integration layers."""
import pytest
import torch
import torch.nn.functional as F

from pyfacex.backbones.fan import FAN
from pyfacex.backbones.iresnet import IResNet
from pyfacex.models import registry
from pyfacex.models.fanface import (FANFace, FANFaceConfig, IntegrationLayer, adain, fanface_r34_h2,
                                    fanface_r34_h2_11_bl_h2l2, fanface_r34_h2_1m_bl_h2l2, fanface_r34_h2_plus,
                                    parse_variant)

FRN = dict(layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), num_features=16, input_size=32)


def tiny(variant="H2,1-1,BL,h2l-2", builder=None, **overrides):
    torch.manual_seed(0)
    kwargs = dict(frn_kwargs=FRN, fan=FAN(2, width=16, depth=2), fan_size=64, **overrides)
    return builder(**kwargs) if builder else FANFace(variant, **kwargs)


@pytest.fixture
def images():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.parametrize("text, config", [
    ("H2", FANFaceConfig(2)),
    ("H2+", FANFaceConfig(2, True)),
    ("H2,1-1,BL,h2l-2", FANFaceConfig(2, False, "1-1", "BL", "h2l", 2)),
    ("H2,1M,BL,h2l-2", FANFaceConfig(2, False, "1M", "BL", "h2l", 2)),
    ("H2, 1-M, AL, l2h-1", FANFaceConfig(2, False, "1M", "AL", "l2h", 1)),
    ("H1+,1-1,SL,h2l-4", FANFaceConfig(1, True, "1-1", "SL", "h2l", 4)),
])
def test_variant_strings_parse(text, config):
    assert parse_variant(text) == config
    assert parse_variant(str(config)) == config


@pytest.mark.parametrize("text, part", [
    ("", "first part"), ("h2", "first part"), ("H0", "first part"), ("H2,1-1,BL", "4 comma"),
    ("H2,2-2,BL,h2l-2", "connectivity"), ("H2,1-1,XL,h2l-2", "integration layer"),
    ("H2,1-1,BL,mid-2", "features"), ("H2,1-1,BL,h2l", "features"),
])
def test_bad_variant_strings_raise_naming_the_string(text, part):
    with pytest.raises(ValueError, match=f"variant {text!r}.*{part}"):
        parse_variant(text)


def test_hourglass_beyond_the_fan_is_rejected():
    with pytest.raises(ValueError, match="hourglass 3 does not exist.*2 stacks"):
        tiny("H2,1-1,BL,h2l-3")


def test_entry_points_build_their_variants_and_are_registered():
    for builder, text in [(fanface_r34_h2, "H2"), (fanface_r34_h2_plus, "H2+"),
                          (fanface_r34_h2_11_bl_h2l2, "H2,1-1,BL,h2l-2"),
                          (fanface_r34_h2_1m_bl_h2l2, "H2,1M,BL,h2l-2")]:
        assert tiny(builder=builder).config == parse_variant(text)
        assert registry._MODELS[builder.__name__] is builder


def test_frn_input_stacks_the_51_internal_heatmaps_of_the_chosen_hourglass(images):
    model = tiny("H2").eval()
    seen = {}
    model.frn.conv1.register_forward_pre_hook(lambda mod, inp: seen.update(x=inp[0]))
    embedding = model(images)
    assert embedding.shape == (3, 16)
    fan_input = F.interpolate((images + 1) / 2, size=(64, 64), mode="bilinear", align_corners=False)
    heatmaps = model.fan(fan_input)[1][:, 17:]  # hourglass 2, jaw line 0-16 dropped
    expected = F.interpolate(heatmaps, size=(32, 32), mode="bilinear", align_corners=False)
    assert seen["x"].shape == (3, 54, 32, 32)
    torch.testing.assert_close(seen["x"][:, :3], images)
    torch.testing.assert_close(seen["x"][:, 3:], expected)


def test_fan_is_frozen_gets_no_gradient_and_stays_in_eval(images):
    model = tiny("H2,1-1,BL,h2l-2", num_classes=3)
    stats = model.fan.bn1.running_mean.clone()
    model.train()
    assert not model.fan.training and model.frn.training
    assert not any(p.requires_grad for p in model.fan.parameters())
    loss, _ = model(images, torch.tensor([0, 1, 2]))
    loss.backward()
    assert all(p.grad is None for p in model.fan.parameters())
    assert torch.equal(model.fan.bn1.running_mean, stats)
    assert all(p.grad is not None for p in model.integration.parameters())
    assert model.frn.conv1.weight.grad.abs().sum() > 0


def test_connectivity_1_1_and_1_m():
    one = tiny("H2,1-1,BL,h2l-2")
    many = tiny("H2,1M,BL,h2l-2")
    # depth-2 FAN has 3 levels: stage k takes level min(k, 2) for 1-1, all of them for 1-M
    assert [s.levels for s in one.integration] == [(0,), (1,), (2,), (2,)]
    assert [s.levels for s in many.integration] == [(0, 1, 2)] * 4
    assert all(torch.equal(s.gamma, torch.ones(1)) for s in one.integration)
    assert all(torch.allclose(s.gamma, torch.full((3,), 1 / 3)) for s in many.integration)


def test_integration_changes_the_computation_per_layer_kind_and_subnetwork(images):
    base = tiny("H2").eval()
    outputs = {"H2": base(images)}
    for variant in ["H2,1-1,BL,h2l-2", "H2,1-1,SL,h2l-2", "H2,1-1,AL,h2l-2", "H2,1-1,BL,l2h-2",
                    "H2,1-1,BL,h2l-1", "H2,1M,BL,h2l-2"]:
        model = tiny(variant).eval()
        model.frn.load_state_dict(base.frn.state_dict())  # same FRN: differences come from eq. 2
        outputs[variant] = model(images)
        # γ = 0 turns the integration off: back to H2 exactly
        with torch.no_grad():
            for stage in model.integration:
                stage.gamma.zero_()
        torch.testing.assert_close(model(images), outputs["H2"])
    values = list(outputs.values())
    for i in range(len(values)):
        for j in range(i):
            assert not torch.allclose(values[i], values[j], atol=1e-4), (list(outputs)[i], list(outputs)[j])


def test_h2_plus_stacks_heatmaps_at_every_stage_end(images):
    model = tiny("H2+").eval()
    assert [model.frn.layer2[0].conv1.in_channels, model.frn.layer3[0].conv1.in_channels,
            model.frn.layer4[0].conv1.in_channels, model.frn.bn2.num_features] == [8 + 51, 16 + 51, 32 + 51, 64 + 51]
    # With the input heatmap channels zeroed, H2 no longer sees the FAN but H2+ still does.
    plain = tiny("H2").eval()
    outputs = {}
    for name, model_ in (("plus", model), ("plain", plain)):
        with torch.no_grad():
            model_.frn.conv1.weight[:, 3:] = 0
            before = model_(images)
            model_.fan.l1.bias += 1.0  # changes hourglass 2's heatmaps only
            outputs[name] = (before, model_(images))
    torch.testing.assert_close(*outputs["plain"])
    assert not torch.allclose(*outputs["plus"], atol=1e-4)


def test_adain_gives_the_content_the_style_statistics():
    content, style = torch.randn(2, 4, 5, 5) * 3 + 1, torch.randn(2, 4, 7, 7) * 0.5 - 2
    out = adain(content, style)
    torch.testing.assert_close(out.mean(dim=(2, 3)), style.mean(dim=(2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=(2, 3), correction=0), style.std(dim=(2, 3), correction=0),
                               atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("kind", ["BL", "SL", "AL"])
def test_integration_layer_shapes_and_adain_direction(kind):
    torch.manual_seed(0)
    layer = IntegrationLayer(16, 8, kind).eval()
    x, y = torch.randn(2, 16, 8, 8), torch.randn(2, 8, 6, 6)
    out = layer(x, y)
    assert out.shape == y.shape
    other = IntegrationLayer(16, 8, kind, adain="x").eval()
    other.load_state_dict(layer.state_dict())
    assert not torch.allclose(other(x, y), out, atol=1e-4)
    with pytest.raises(ValueError, match="kind must be one of"):
        IntegrationLayer(16, 8, "XL")


def test_bad_arguments_raise_clear_errors(images):
    model = tiny("H2", num_classes=0)
    with pytest.raises(ValueError, match="no head"):
        model(images, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"images must be 32×32"):
        model(torch.zeros(1, 3, 40, 40))
    with pytest.raises(ValueError, match="fan_size must be a positive multiple of 16"):
        FANFace("H2", frn_kwargs=FRN, fan=FAN(2, width=16, depth=2), fan_size=72)
    with pytest.raises(ValueError, match="54 input channels"):
        FANFace("H2", frn=IResNet(**FRN), fan=FAN(2, width=16, depth=2))


def test_a_few_sgd_steps_lower_the_loss(images):
    model = tiny("H2,1-1,BL,h2l-2", num_classes=3, s=16.0, margin=0.2)
    labels = torch.tensor([0, 1, 2])
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss, _ = model(images, labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
