"""iResNet: arcface_torch's state_dict layout, its head and fp16 switch, feature maps, IR-SE."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from pyfacex.backbones.iresnet import (
    IBasicBlock,
    IResNet,
    iresnet18,
    iresnet34,
    iresnet50,
    iresnet100,
    iresnet200,
    irse50,
)

FIXTURE = Path(__file__).with_name("iresnet50_state_dict.txt")


def tiny(**overrides) -> IResNet:
    return IResNet(**{"layers": (1, 1, 1, 1), "widths": (8, 16, 32, 64), "num_features": 32,
                      "input_size": 32, **overrides})


def images(batch: int = 4, size: int | tuple[int, int] = 32, channels: int = 3, seed: int = 0) -> torch.Tensor:
    h, w = (size, size) if isinstance(size, int) else size
    return torch.randn(batch, channels, h, w, generator=torch.Generator().manual_seed(seed))


def published_layout() -> list[tuple[str, tuple[int, ...]]]:
    layout = []
    for line in FIXTURE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, shape = line.split()
            dims = shape.strip("[]")
            layout.append((name, tuple(int(d) for d in dims.split(",")) if dims else ()))
    return layout


def layout(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(t.shape)) for name, t in model.state_dict().items()]


def test_iresnet50_state_dict_matches_arcface_torch_layout():
    assert layout(iresnet50()) == published_layout()


def test_arcface_torch_checkpoint_loads_strictly():
    # A checkpoint with exactly the published names and shapes, random values.
    g = torch.Generator().manual_seed(0)
    checkpoint = {name: (torch.tensor(7) if name.endswith("num_batches_tracked") else torch.randn(shape, generator=g))
                  for name, shape in published_layout()}
    model = iresnet50()
    model.load_state_dict(checkpoint, strict=True)
    assert torch.equal(model.layer3[13].conv2.weight, checkpoint["layer3.13.conv2.weight"])
    assert torch.equal(model.fc.weight, checkpoint["fc.weight"])


@pytest.mark.parametrize("factory, blocks", [(iresnet18, (2, 2, 2, 2)), (iresnet34, (3, 4, 6, 3)),
                                             (iresnet100, (3, 13, 30, 3)), (iresnet200, (6, 26, 60, 6))])
def test_depths_and_downsample_on_first_block_only(factory, blocks):
    with torch.device("meta"):
        model = factory()
    assert tuple(len(stage) for stage in model.stage_modules) == blocks
    for stage in model.stage_modules:
        assert stage[0].downsample is not None and stage[0].conv2.stride == (2, 2)
        assert all(block.downsample is None and block.conv2.stride == (1, 1) for block in stage[1:])
    assert model.fc.in_features == 512 * 7 * 7 and model.fc.out_features == 512


def test_initialisation_as_arcface_torch():
    model = tiny()
    assert not model.features.weight.requires_grad
    assert torch.equal(model.features.weight, torch.ones(32))
    conv = model.layer2[0].conv1.weight
    assert abs(conv.std().item() - 0.1) < 0.01 and abs(conv.mean().item()) < 0.01  # N(0, 0.1²)
    assert all(m.eps == 1e-5 for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))


def test_tiny_sizes_fc_from_input_size():
    model = tiny(input_size=(32, 48), in_channels=54)  # FAN-Face: image + 51 heatmaps
    assert model.fc.in_features == 64 * 2 * 3
    model.eval()
    assert model(images(2, (32, 48), channels=54)).shape == (2, 32)


def test_feature_map_and_stages_at_112():
    model = tiny(input_size=112).eval()
    x = images(2, 112)
    with torch.no_grad():
        stages = model.stages(x)
        c = model(x, return_feature_map=True)
        embedding = model(x)
    assert [tuple(s.shape) for s in stages] == [(2, 8, 56, 56), (2, 16, 28, 28), (2, 32, 14, 14), (2, 64, 7, 7)]
    assert c.shape == (2, 64, 7, 7)
    torch.testing.assert_close(stages[-1], c)
    # C(x) is taken before bn2: the head applied to it is the whole embedding.
    torch.testing.assert_close(model.head(c), embedding)
    with torch.no_grad():
        manual = model.features(model.fc(torch.flatten(model.bn2(c), 1)))
    torch.testing.assert_close(manual, embedding)


def test_feature_map_accepts_any_size_but_embedding_needs_input_size():
    model = tiny().eval()
    assert model(images(1, 48), return_feature_map=True).shape == (1, 64, 3, 3)
    with pytest.raises(ValueError, match="input_size"):
        model(images(1, 48))


def test_save_load_round_trip_strict():
    model = tiny()
    model(images(4, seed=1))  # moves the BN running statistics away from their initial values
    with torch.no_grad():
        model.layer1[0].prelu.weight.add_(0.3)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = tiny()
    fresh.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    assert not fresh.features.weight.requires_grad
    model.eval(), fresh.eval()
    x = images(3, seed=2)
    torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


def test_dropout_only_in_training():
    model = tiny(dropout=0.5)
    reference = tiny()
    reference.load_state_dict(model.state_dict())
    x = images()
    model.eval(), reference.eval()
    torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
    model.train(), reference.train()
    assert not torch.allclose(model(x), model(x))
    torch.testing.assert_close(reference(x), reference(x))  # training mode is otherwise deterministic


def test_fp16_switch_on_cpu_runs_body_in_bf16_and_head_in_fp32():
    model = tiny(fp16=True).eval()
    seen = {}
    model.layer4.register_forward_hook(lambda m, i, o: seen.__setitem__("body", o.dtype))
    model.fc.register_forward_pre_hook(lambda m, i: seen.__setitem__("fc", i[0].dtype))
    x = images()
    out = model(x)
    assert seen == {"body": torch.bfloat16, "fc": torch.float32}
    assert out.dtype == torch.float32
    assert model(x, return_feature_map=True).dtype == torch.float32
    assert all(s.dtype == torch.float32 for s in model.stages(x))
    full = tiny().eval()
    full.load_state_dict(model.state_dict())
    expected = full(x)
    assert not torch.equal(out, expected)  # autocast was really on
    torch.testing.assert_close(out, expected, rtol=0.05, atol=0.05 * expected.abs().max().item())


def test_fp16_off_leaves_an_enclosing_autocast_alone():
    model = tiny().eval()
    seen = {}
    model.layer4.register_forward_hook(lambda m, i, o: seen.__setitem__("body", o.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(images())
    assert seen["body"] == torch.bfloat16


def test_forward_backward_reaches_every_trainable_parameter():
    model = tiny(se=True)
    x = images(seed=3).requires_grad_()
    projection = torch.randn(4, 32, generator=torch.Generator().manual_seed(4))
    (model(x) * projection).sum().backward()  # a plain sum of squares would be constant after BN1d
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert model.features.weight.grad is None
    assert x.grad is not None and x.grad.abs().sum() > 0
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert torch.equal(model.features.weight, torch.ones(32))


def test_se_scales_the_residual_branch_after_bn3():
    plain = IBasicBlock(16, 16)
    g = torch.Generator().manual_seed(5)
    for bn in (plain.bn1, plain.bn2, plain.bn3):  # non-trivial affine BNs tell "after bn3" from "before"
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.data = torch.randn(16, generator=g)
        bn.running_var.data = torch.rand(16, generator=g) + 0.5
    with_se = IBasicBlock(16, 16, se_reduction=16)
    with_se.load_state_dict(plain.state_dict(), strict=False)
    torch.nn.init.zeros_(with_se.se.fc2.weight)  # σ(0) = 1/2 on every channel
    plain.eval(), with_se.eval()
    x = torch.randn(2, 16, 6, 6)
    torch.testing.assert_close(with_se(x) - x, 0.5 * (plain(x) - x))


def test_irse50_adds_only_se_keys_to_the_arcface_torch_layout():
    se_model, plain = irse50(), iresnet50()
    extra = set(se_model.state_dict()) - set(plain.state_dict())
    blocks = [f"layer{s}.{i}" for s, n in enumerate((3, 4, 14, 3), 1) for i in range(n)]
    assert extra == {f"{b}.se.fc{k}.weight" for b in blocks for k in (1, 2)}
    assert se_model.layer2[0].se.fc1.weight.shape == (128 // 16, 128, 1, 1)
    result = se_model.load_state_dict(plain.state_dict(), strict=False)
    assert set(result.missing_keys) == extra and not result.unexpected_keys


def test_factories_accept_tiny_overrides():
    model = iresnet34(layers=(1, 1, 1, 1), widths=(8, 8, 8, 8), num_features=16, input_size=16, se=True)
    assert model.layer1[0].se is not None and model.fc.in_features == 8
    assert model.eval()(images(2, 16)).shape == (2, 16)


@pytest.mark.parametrize("kwargs, message", [
    ({"layers": (1, 1, 1)}, "layers"), ({"widths": (8, 0, 8, 8)}, "widths"), ({"input_size": 0}, "input_size"),
    ({"dropout": 1.0}, "dropout"), ({"num_features": 0}, "num_features"), ({"amp_dtype": torch.float32}, "amp_dtype"),
])
def test_bad_configuration_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kwargs)


def test_bad_input_is_named():
    model = tiny().eval()
    with pytest.raises(ValueError, match=r"x must be floating images \(B, 3, H, W\)"):
        model(images(2, channels=4))
    with pytest.raises(ValueError, match="x must be"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        model([[0.0]])
    with pytest.raises(ValueError, match=r"feature_map must have shape \(B, 64, 2, 2\)"):
        model.head(torch.zeros(2, 64, 3, 3))


def test_empty_batch_gives_empty_embeddings():
    model = tiny().eval()
    assert model(images(0)).shape == (0, 32)
