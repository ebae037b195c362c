"""FAN-Face (Sec. 3): variant strings, frozen FAN, heatmap stacking, 1-1 / 1-M integration, AS7 multi-task."""
import pytest
import torch
import torch.nn.functional as F

from pyfacex.backbones.fan import FAN
from pyfacex.backbones.iresnet import IResNet
from pyfacex.models import registry
from pyfacex.models.fanface import (
    FANFace,
    FANFaceConfig,
    fanface_r34_h2,
    fanface_r34_h2_1m_bl_h2l2,
    fanface_r34_h2_11_bl_h2l2,
    fanface_r34_h2_plus,
    fanface_r34_multitask,
    parse_variant,
)

FRN = dict(layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), num_features=16, input_size=32)


def tiny(variant="H2,1-1,BL,h2l-2", builder=None, **overrides):
    torch.manual_seed(0)
    kwargs = {"frn_kwargs": FRN, "fan": FAN(2, width=16, depth=2), "fan_size": 64, **overrides}
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
    ("Multi-task", FANFaceConfig(None, multitask=True)),
    (" multi-task ", FANFaceConfig(None, multitask=True)),
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
                          (fanface_r34_h2_1m_bl_h2l2, "H2,1M,BL,h2l-2"), (fanface_r34_multitask, "Multi-task")]:
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


DEEP_FRN = dict(FRN, layers=(2, 3, 1, 2))


def test_1_1_integrates_once_per_stage_end_and_1_m_after_every_block_of_the_stage():
    one = tiny("H2,1-1,BL,h2l-2", frn_kwargs=DEEP_FRN)
    many = tiny("H2,1M,BL,h2l-2", frn_kwargs=DEEP_FRN)
    assert [s.points for s in one.integration] == [(1,), (2,), (0,), (1,)]
    assert [s.points for s in many.integration] == [(0, 1), (0, 1, 2), (0,), (0, 1)]
    assert sum(len(s.layers) for s in many.integration) == 2 + 3 + 1 + 2  # one layer per point
    assert all(torch.equal(s.gamma, torch.ones(1)) for s in one.integration)
    for stage, gamma in zip(many.integration, ([0.5, 0.5], [1 / 3] * 3, [1.0], [0.5, 0.5])):
        torch.testing.assert_close(stage.gamma, torch.tensor(gamma))


def test_1_m_mixes_the_one_fan_tensor_of_the_stage_resolution_into_every_block_output(images):
    # Sec. 3.3: "1 feature tensor from FAN with all feature tensors from FRN for each distinct spatial
    # resolution"; the FAN tensor of another resolution never reaches a stage.
    model = tiny("H2,1M,BL,h2l-2", frn_kwargs=DEEP_FRN).eval()
    seen = {"x": [], "y": [], "blocks": []}
    for stage, integration in zip(model.frn.stage_modules, model.integration):
        integration.align.register_forward_pre_hook(lambda mod, inp: seen["x"].append(inp[0]))
        for layer in integration.layers:
            layer.register_forward_pre_hook(lambda mod, inp: seen["y"].append(inp[1]))
        for block in stage:
            block.register_forward_hook(lambda mod, inp, out: seen["blocks"].append(out))
    model(images)
    out = model.landmark_outputs(images).high_to_low[1]  # hourglass 2: levels at 16, 8, 4 (fan_size 64)
    assert len(seen["x"]) == 4  # aligned once per stage
    for x, level in zip(seen["x"], (0, 1, 2, 2)):
        torch.testing.assert_close(x, out[level])
    # Every block's output, as the block returned it, is the y of that block's integration point.
    assert len(seen["y"]) == len(seen["blocks"]) == 8
    for y, block_out in zip(seen["y"], seen["blocks"]):
        assert y is block_out
    # Spatial sizes agree within each stage: 16, 8, 4, 2 at 32 px.
    assert [y.shape[-1] for y in seen["y"]] == [16, 16, 8, 8, 8, 4, 2, 2]


def test_a_middle_block_point_of_1_m_changes_the_output_and_its_gamma_switches_it_off(images):
    model = tiny("H2,1M,BL,h2l-2", frn_kwargs=DEEP_FRN).eval()
    with torch.no_grad():
        for stage in model.integration:
            stage.gamma.zero_()
        off = model(images)
        model.integration[1].gamma[1] = 1.0  # stage 2, its 2nd of 3 blocks only
        on = model(images)
    assert not torch.allclose(on, off, atol=1e-4)


def test_integration_changes_the_computation_per_layer_kind_and_subnetwork(images):
    base = tiny("H2").eval()
    outputs = {"H2": base(images)}
    for variant in ["H2,1-1,BL,h2l-2", "H2,1-1,SL,h2l-2", "H2,1-1,AL,h2l-2", "H2,1-1,BL,l2h-2",
                    "H2,1-1,BL,h2l-1"]:
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
    # With one block per stage the last block is every block: 1-M is 1-1 (same seed, same weights).
    torch.testing.assert_close(tiny("H2,1M,BL,h2l-2").eval()(images), outputs["H2,1-1,BL,h2l-2"])


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


# ---------------------------------------------------------------- AS7: the multi-task baseline

def multitask(**overrides):
    return tiny("Multi-task", heatmap_head_channels=8, **overrides)


def test_multitask_is_a_plain_frn_with_a_heatmap_head_after_layer_4(images):
    model = multitask().eval()
    assert model.frn.in_channels == 3 and model.integration is None
    seen = {}
    model.frn.layer4.register_forward_hook(lambda mod, inp, out: seen.update(layer4=out))
    model.heatmap_head.register_forward_pre_hook(lambda mod, inp: seen.update(head_input=inp[0]))
    model(images, return_heatmap_loss=True)
    assert seen["head_input"] is seen["layer4"]
    # It embeds without the FAN: the plain FRN's embedding.
    fan_calls = []
    model.fan.register_forward_pre_hook(lambda mod, inp: fan_calls.append(1))
    torch.testing.assert_close(model(images), model.frn(images))
    assert not fan_calls


def test_multitask_loss_is_arcface_plus_0_1_times_l2_to_the_fan_heatmaps(images):
    model = multitask(num_classes=3).eval()
    assert model.heatmap_loss_weight == 0.1
    labels = torch.tensor([0, 1, 2])
    loss, embedding = model(images, labels)
    # Oracle: the FAN's last-stack internal heatmaps, resized to the head's output, against the head.
    fan_input = F.interpolate((images + 1) / 2, size=(64, 64), mode="bilinear", align_corners=False)
    target = model.fan(fan_input)[-1][:, 17:]
    prediction = model.heatmap_head(model.frn(images, return_feature_map=True))
    assert prediction.shape == (3, 51, 16, 16)  # 2×2 after layer 4 at 32 px, three ×2 upsamplings
    target = F.interpolate(target, size=(16, 16), mode="bilinear", align_corners=False)
    l2 = ((prediction - target) ** 2).mean()
    torch.testing.assert_close(loss, model.head(embedding, labels) + 0.1 * l2)
    torch.testing.assert_close(model(images, return_heatmap_loss=True)[1], l2)
    heavier = multitask(num_classes=3, heatmap_loss_weight=1.0).eval()
    torch.testing.assert_close(heavier(images, labels)[0], heavier.head(embedding, labels) + l2)


def test_multitask_heatmap_loss_trains_layer_4_and_not_the_fan(images):
    model = multitask()
    _, heatmap_loss = model(images, return_heatmap_loss=True)
    heatmap_loss.backward()
    assert model.frn.layer4[0].conv2.weight.grad.abs().sum() > 0  # the gradient reaches layer 4
    assert model.frn.fc.weight.grad is None  # the embedding head plays no part in it
    assert all(p.grad is None for p in model.fan.parameters())
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        _, loss = model(images, return_heatmap_loss=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.85 * losses[0], losses


def test_heatmap_loss_requests_outside_the_multitask_variant_raise(images):
    with pytest.raises(ValueError, match="return_heatmap_loss applies to the 'Multi-task' variant only"):
        tiny("H2")(images, return_heatmap_loss=True)
    with pytest.raises(ValueError, match="heatmap_stack must be None exactly for the multi-task baseline"):
        FANFaceConfig(None)
    with pytest.raises(ValueError, match="heatmap_loss_weight must be a number >= 0, got -1"):
        multitask(heatmap_loss_weight=-1)
    with pytest.raises(ValueError, match="3 input channels \\(RGB: the multi-task baseline"):
        FANFace("Multi-task", frn=IResNet(**{**FRN, "in_channels": 54}), fan=FAN(2, width=16, depth=2))
