"""LFENet (Sec. III): set semantics, segmentation, relations, training, entry points."""
import io

import pytest
import torch

from pyfacex.backbones.iresnet import IRESNET_LAYERS, IResNet
from pyfacex.models.lfenet import LFENet, lfenet_irse50, lfenet_r34, lfenet_r50, lfenet_r100, set_mean
from pyfacex.nn import CosFace

TINY = dict(widths=(8, 16, 32, 64), num_features=32, input_size=32)


def tiny_backbone(**kwargs) -> IResNet:
    return IResNet(layers=(1, 1, 1, 1), **{**TINY, **kwargs})


def tiny(seed: int = 0, transfer: bool = True, **kwargs) -> LFENet:
    """A tiny LFENet; ``transfer`` gives V non-zero weights, so the LIT is not the identity it starts as."""
    torch.manual_seed(seed)
    model = LFENet(tiny_backbone(), **kwargs)
    if transfer:
        with torch.no_grad():
            model.lit.value.weight.normal_(0.0, 0.5)
    return model


def images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def offsets(*sizes: int) -> torch.Tensor:
    return torch.tensor([0, *sizes]).cumsum(0)


def test_at_initialisation_lfenet_embeds_as_its_backbone():
    model = tiny(transfer=False).eval()
    x = images(5)
    torch.testing.assert_close(model(x, offsets(2, 3)), model.backbone(x))
    with torch.no_grad():
        model.lit.value.weight.normal_(0.0, 0.5)
    assert not torch.allclose(model(x, offsets(2, 3)), model.backbone(x), atol=1e-3)


@pytest.mark.parametrize("relation", ["softmax_b", "softmax_a", "scaled_dot"])
def test_set_representation_is_invariant_to_permuting_a_set(relation):
    model = tiny(relation=relation).eval()
    x, sets = images(7), offsets(3, 4)
    order = torch.tensor([2, 0, 1, 6, 4, 3, 5])  # permutes within each set
    with torch.no_grad():
        embeddings, permuted = model(x, sets), model(x[order], sets)
        representation = model.set_representation(x, sets)
        torch.testing.assert_close(permuted, embeddings[order], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(model.set_representation(x[order], sets), representation, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(representation, torch.stack([embeddings[:3].mean(0), embeddings[3:].mean(0)]))
        # information does cross the images of a set: an image alone embeds differently
        assert not torch.allclose(model(x[:1], offsets(1)), embeddings[:1], atol=1e-3)


def test_ragged_batch_equals_per_set_computation():
    model = tiny().eval()
    sizes = (3, 1, 4)
    x, sets = images(sum(sizes)), offsets(*sizes)
    with torch.no_grad():
        packed = model(x, sets)
        alone = torch.cat([model(part, offsets(len(part))) for part in x.split(sizes)])
        representation = model.set_representation(x, sets)
        means = torch.cat([model.set_representation(part, offsets(len(part))) for part in x.split(sizes)])
    torch.testing.assert_close(packed, alone, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(representation, means, rtol=1e-4, atol=1e-4)


def test_segmentation_splits_large_sets_at_test_time_only():
    model = tiny(segment=2)
    assert model.lit.segment is None  # training: whole sets
    model.eval()
    assert model.lit.segment == 2
    x, sets = images(6), offsets(5, 1)  # the set of 5 runs as segments of 2, 2, 1
    with torch.no_grad():
        segmented = model(x, sets)
        per_segment = torch.cat([model(part, offsets(len(part))) for part in x.split((2, 2, 1, 1))])
        torch.testing.assert_close(segmented, per_segment, rtol=1e-4, atol=1e-4)
        # attention never crosses segments: changing image 4 leaves images 0-3 alone ...
        changed = x.clone()
        changed[4] += 1.0
        torch.testing.assert_close(model(changed, sets)[:4], segmented[:4])
        # ... which it does not without θ
        model.segment = None
        whole = model(x, sets)
        assert not torch.allclose(model(changed, sets)[:4], whole[:4], atol=1e-3)
        model.segment = 2
        # the set representation is the mean of all the set's embeddings, not of segment means
        torch.testing.assert_close(model.set_representation(x, sets)[0], segmented[:5].mean(0))
    model.train()
    assert model.lit.segment is None


def test_relation_switch_changes_the_computation():
    reference = tiny(relation="softmax_b")
    x, sets = images(4), offsets(4)
    outputs = {}
    for relation in ("softmax_b", "softmax_a", "scaled_dot"):
        model = LFENet(tiny_backbone(), relation=relation)
        missing, unexpected = model.load_state_dict(reference.state_dict(), strict=False)
        assert not missing and unexpected == ([] if relation != "softmax_a" else ["lit.query.weight", "lit.query.bias",
                                                                                  "lit.key.weight", "lit.key.bias"])
        with torch.no_grad():
            outputs[relation] = model.eval()(x, sets)
    assert model.lit.relation == "scaled_dot"
    names = list(outputs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not torch.allclose(outputs[a], outputs[b], atol=1e-3), (a, b)


def test_forward_backward_reaches_every_part():
    model = tiny(num_classes=4).train()
    x, labels = images(6), torch.tensor([0, 0, 0, 3, 3, 3])
    loss, embeddings = model(x, offsets(3, 3), labels)
    assert loss.dim() == 0 and torch.isfinite(loss) and embeddings.shape == (6, 32)
    loss.backward()
    for name in ("backbone.conv1.weight", "backbone.layer4.0.conv2.weight",
                 "backbone.fc.weight", "lit.query.weight", "lit.key.weight", "lit.value.weight", "head.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_a_few_sgd_steps_lower_the_loss():
    model = tiny(num_classes=3).train()
    x, sets, labels = images(6), offsets(3, 3), torch.tensor([0, 0, 0, 2, 2, 2])
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(6):
        loss, _ = model(x, sets, labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_custom_head_and_set_mean():
    model = tiny(head=CosFace(32, 5)).eval()
    x, labels = images(3), torch.tensor([1, 1, 4])
    with torch.no_grad():
        loss, embeddings = model(x, offsets(3), labels)
        torch.testing.assert_close(loss, model.head(embeddings, labels))
    rows = torch.arange(10.0).reshape(5, 2)
    torch.testing.assert_close(set_mean(rows, offsets(2, 3)), torch.tensor([[1.0, 2.0], [6.0, 7.0]]))
    assert set_mean(rows[:0], offsets()).shape == (0, 2)


def test_state_dict_round_trip_is_strict_and_keeps_iresnet_names():
    model = tiny(num_classes=4).eval()
    assert {"backbone.bn2.weight", "backbone.fc.weight",
            "backbone.features.running_var"} <= set(model.state_dict())
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    clone = tiny(seed=5, transfer=False, num_classes=4).eval()
    clone.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    x = images(3)
    torch.testing.assert_close(clone(x, offsets(3)), model(x, offsets(3)))


@pytest.mark.parametrize("entry, layers, se", [(lfenet_irse50, 50, True), (lfenet_r34, 34, False),
                                               (lfenet_r50, 50, False), (lfenet_r100, 100, False)])
def test_entry_points_build_their_backbone(entry, layers, se):
    model = entry(backbone_kwargs=TINY, num_classes=2, segment=3)
    assert model.backbone.layers == IRESNET_LAYERS[layers]
    assert (model.backbone.layer1[0].se is not None) == se
    assert model.segment == 3 and model.lit.relation == "softmax_b" and model.head.weight.shape == (2, 32)
    assert entry.__doc__ and "eq." in entry.__doc__
    tiny_model = entry(backbone=tiny_backbone(), relation="scaled_dot")
    assert tiny_model.lit.relation == "scaled_dot" and tiny_model.head is None


def test_fp16_backbone_feeds_an_fp32_head():
    torch.manual_seed(0)
    model = LFENet(tiny_backbone(fp16=True)).eval()
    with torch.no_grad():
        embeddings = model(images(3), offsets(3))
    assert embeddings.dtype == torch.float32 and torch.isfinite(embeddings).all()


def test_bad_input_is_named():
    model = tiny()
    with pytest.raises(ValueError, match="no head"):
        model(images(2), offsets(2), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="backbone must be a module or one of"):
        LFENet("resnet50")
    with pytest.raises(TypeError, match="iResNet-like"):
        LFENet(torch.nn.Conv2d(3, 8, 3))
    with pytest.raises(ValueError, match="backbone_kwargs"):
        LFENet(tiny_backbone(), backbone_kwargs={"dropout": 0.1})
    with pytest.raises(ValueError, match="either head or num_classes"):
        LFENet(tiny_backbone(), head=CosFace(32, 2), num_classes=2)
    with pytest.raises(ValueError, match="segment"):
        LFENet(tiny_backbone(), segment=0)
    with pytest.raises(ValueError, match="relation"):
        LFENet(tiny_backbone(), relation="softmax")
    with pytest.raises(ValueError, match="offsets"):
        model(images(3), offsets(2))
    with pytest.raises(ValueError, match="set 1 is empty"):
        model.eval().set_representation(images(2), offsets(2, 0))
    with pytest.raises(ValueError, match="labels must be"):
        tiny(num_classes=2)(images(2), offsets(2), torch.tensor([0]))
