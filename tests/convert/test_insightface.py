"""insightface arcface_torch backbone files → pyfacex model files with the same features."""
import pytest
import torch

from pyfacex.convert import convert, import_model
from pyfacex.train.checkpoint import load_model


def arcface(peers, depth=18, seed=0, **overrides):
    return peers.randomise(peers.ArcfaceIResNet(peers.STAGE_LAYERS[depth], **{**peers.TINY, **overrides}), seed)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=1)


@pytest.mark.parametrize("depth, form", [(18, "backbone"), (50, "ddp"), (18, "checkpoint")])
def test_backbone_file_converts_to_the_same_features(peers, tmp_path, depth, form):
    original = arcface(peers, depth)
    src = peers.save_arcface_backbone(original, tmp_path / "backbone.pth", form)
    report = convert(src, f"iresnet{depth}", tmp_path / "model.pt")
    model, info = load_model(report.path)
    x = peers.faces(4)
    with torch.no_grad():
        ours, theirs = model(x), original(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert cosine(ours, theirs).min() >= 0.9999
    assert info["name"] == f"iresnet{depth}" and info["image_size"] == 32 and info["channel_order"] == "RGB"
    assert info["kwargs"] == {"widths": [4, 8, 12, 16], "num_features": 8, "input_size": 32}
    origin = info["converted_from"]
    assert origin["source"] == "insightface" and origin["prefix"] == ("module." if form == "ddp" else "")
    assert origin["container"] == ("state_dict_backbone" if form == "checkpoint" else "")
    assert report.check is None and report.tensors == len(original.state_dict())


def test_import_model_is_the_converted_file_without_the_file(peers, tmp_path):
    # what `pyfacex eval --arch iresnet18 --weights backbone.pth` loads
    src = peers.save_arcface_backbone(arcface(peers), tmp_path / "backbone.pth")
    model, info = import_model(src, "iresnet18")
    written, written_info = load_model(convert(src, "iresnet18", tmp_path / "model.pt").path)
    assert info == written_info
    assert not model.training
    x = peers.faces(2)
    with torch.no_grad():
        torch.testing.assert_close(model(x), written(x), rtol=0, atol=0)


def test_wrong_arch_names_both_depths(peers, tmp_path):
    src = peers.save_arcface_backbone(arcface(peers), tmp_path / "backbone.pth")
    with pytest.raises(ValueError, match=r"\(2, 2, 2, 2\) blocks per stage \(that is iresnet18\), "
                                         r"--arch iresnet50 has \(3, 4, 14, 3\)"):
        import_model(src, "iresnet50")
    with pytest.raises(ValueError, match="has no squeeze-excitation.*--arch irse50 has"):
        import_model(src, "irse50")
    with pytest.raises(ValueError, match="--arch must be one of iresnet18, .*, got 'resnet18'"):
        import_model(src, "resnet18")


def test_missing_and_misshapen_tensors_are_named(peers, tmp_path):
    state = arcface(peers).state_dict()
    missing = dict(state)
    del missing["layer2.1.bn3.running_var"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing 1: layer2\.1\.bn3\.running_var"):
        import_model(tmp_path / "missing.pth", "iresnet18")
    misshapen = dict(state, **{"layer3.0.conv2.weight": torch.zeros(12, 12, 1, 1)})
    torch.save(misshapen, tmp_path / "misshapen.pth")
    with pytest.raises(ValueError, match=r"shape mismatch 1: layer3\.0\.conv2\.weight \(12, 12, 1, 1\) vs "
                                         r"\(12, 12, 3, 3\)"):
        import_model(tmp_path / "misshapen.pth", "iresnet18")
    no_block = {k: v for k, v in state.items() if not k.startswith("layer4.1.")}
    no_block.update({k.replace("layer4.1.", "layer4.2."): v for k, v in state.items() if k.startswith("layer4.1.")})
    torch.save(no_block, tmp_path / "gap.pth")
    with pytest.raises(ValueError, match=r"layer4 has blocks \[0, 2\] but not \[1\]"):
        import_model(tmp_path / "gap.pth", "iresnet18")


def test_input_size_follows_fc(peers, tmp_path):
    # a 224-style network at tiny scale: fc takes a 4x4 map, so the faces are 64x64
    original = arcface(peers, input_size=64)
    src = peers.save_arcface_backbone(original, tmp_path / "backbone.pth")
    model, info = import_model(src, "iresnet18")
    assert info["image_size"] == 64 and info["kwargs"]["input_size"] == 64
    x = peers.faces(2, size=64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), original(x), rtol=1e-5, atol=1e-5)


def test_existing_out_is_kept_without_overwrite(peers, tmp_path):
    src = peers.save_arcface_backbone(arcface(peers), tmp_path / "backbone.pth")
    out = tmp_path / "model.pt"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert(src, "iresnet18", out)
    assert out.read_bytes() == b"keep me"
    convert(src, "iresnet18", out, overwrite=True)
    assert load_model(out)[1]["name"] == "iresnet18"
