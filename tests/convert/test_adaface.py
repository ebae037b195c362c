"""AdaFace .ckpt files → pyfacex model files: the same features on the same faces, RGB in."""
import pytest
import torch

from pyfacex.convert import convert, import_model
from pyfacex.data.synthetic import SyntheticFaceWorld
from pyfacex.data.synthetic.protocols import write_lfw_like
from pyfacex.eval import evaluate_protocol
from pyfacex.train.checkpoint import load_embedder, load_model


def adaface(peers, depth=18, seed=2, **overrides):
    return peers.randomise(peers.AdaFaceIR(peers.STAGE_LAYERS[depth], **{**peers.TINY, **overrides}), seed)


def adaface_features(network, rgb: torch.Tensor) -> torch.Tensor:
    """What AdaFace's inference computes for RGB faces: BGR in, the embedding times its norm out."""
    with torch.no_grad():
        unit, norm = network(rgb.flip(1))
    return unit * norm


@pytest.mark.parametrize("depth", [18, 34])
def test_ckpt_converts_to_the_same_features_on_rgb(peers, tmp_path, depth):
    original = adaface(peers, depth)
    src = peers.save_adaface_ckpt(original, tmp_path / "adaface.ckpt")
    report = convert(src, f"iresnet{depth}", tmp_path / "model.pt")
    model, info = load_model(report.path)
    x = peers.faces(4)
    with torch.no_grad():
        ours = model(x)
    theirs = adaface_features(original, x)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    assert torch.nn.functional.cosine_similarity(ours.double(), theirs.double()).min() >= 0.9999
    # AdaFace's normalised output and norm, from pyfacex's raw embedding
    with torch.no_grad():
        unit, norm = original(x.flip(1))
    torch.testing.assert_close(ours / ours.norm(dim=1, keepdim=True), unit, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.norm(dim=1, keepdim=True), norm, rtol=1e-4, atol=1e-4)
    # the channel reversal matters: the same weights on RGB give other features
    assert not torch.allclose(ours, adaface_features(original, x.flip(1)), rtol=1e-2, atol=1e-2)

    assert info["kwargs"]["variant"] == "adaface" and info["channel_order"] == "RGB"
    origin = info["converted_from"]
    assert origin == {"source": "adaface", "file": "adaface.ckpt", "prefix": "model.", "container": "state_dict",
                      "ignored_entries": 4, "channel_order": "BGR", "stem_channels_reversed": True}
    assert model.layer1[0].downsample is None and model.layer1[0].shortcut_stride == 2
    assert all(stage[0].downsample is not None for stage in model.stage_modules[1:])
    assert not model.features.affine


def test_ir_se_50_converts_to_irse50(peers, tmp_path):
    original = adaface(peers, 50, se=True, widths=(16, 32, 48, 64))
    src = peers.save_adaface_ckpt(original, tmp_path / "adaface_ir_se50.ckpt", arch="ir_se_50")
    with pytest.raises(ValueError, match=r"has squeeze-excitation \(IR-SE\) blocks but --arch iresnet50 has none"):
        import_model(src, "iresnet50")
    model, info = import_model(src, "irse50")
    x = peers.faces(3)
    with torch.no_grad():
        ours = model(x)
    torch.testing.assert_close(ours, adaface_features(original, x), rtol=1e-4, atol=1e-4)
    assert info["kwargs"] == {"widths": [16, 32, 48, 64], "num_features": 8, "input_size": 32, "variant": "adaface"}


def test_training_metadata_is_never_run(peers, tmp_path):
    # hyper-parameters holding an argparse.Namespace, a numpy scalar and an object whose unpickling calls code
    original = adaface(peers)
    src = peers.save_adaface_ckpt(original, tmp_path / "adaface.ckpt", odd_metadata=True)
    peers.NotCalled.calls.clear()
    model, _ = import_model(src, "iresnet18")
    assert peers.NotCalled.calls == []
    x = peers.faces(2)
    with torch.no_grad():
        torch.testing.assert_close(model(x), adaface_features(original, x), rtol=1e-4, atol=1e-4)


def test_wrong_arch_and_foreign_entries(peers, tmp_path):
    original = adaface(peers, 34)
    src = peers.save_adaface_ckpt(original, tmp_path / "adaface.ckpt")
    with pytest.raises(ValueError, match=r"\(3, 4, 6, 3\) blocks per stage \(that is iresnet34\), --arch iresnet100"):
        import_model(src, "iresnet100")

    state = {f"model.{k}": v for k, v in original.state_dict().items()}
    torch.save({"state_dict": {**state, "model.body.2.res_layer.9.weight": torch.zeros(3)}}, tmp_path / "extra.ckpt")
    with pytest.raises(ValueError, match=r"1 entries are not part of AdaFace's IR: 'body\.2\.res_layer\.9\.weight'"):
        import_model(tmp_path / "extra.ckpt", "iresnet34")

    bottleneck = dict(state, **{"model.body.0.res_layer.1.weight": torch.zeros(4, 4, 1, 1)})
    torch.save({"state_dict": bottleneck}, tmp_path / "ir152.ckpt")
    with pytest.raises(ValueError, match=r"bottleneck IR \(AdaFace's ir_152 / ir_200"):
        import_model(tmp_path / "ir152.ckpt", "iresnet34")

    missing = {k: v for k, v in state.items() if k != "model.output_layer.3.bias"}
    torch.save({"state_dict": missing}, tmp_path / "missing.ckpt")
    with pytest.raises(ValueError, match=r"missing 1: fc\.bias"):
        import_model(tmp_path / "missing.ckpt", "iresnet34")


class _AdaFaceInference(torch.nn.Module):
    """AdaFace's own network as pyfacex's evaluation calls an embedder: RGB in [-1, 1] → features."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, x):
        unit, norm = self.network(x.flip(1))
        return unit * norm


def test_converted_checkpoint_evaluates_as_in_adafaces_code(peers, tmp_path):
    original = adaface(peers)
    model_file = convert(peers.save_adaface_ckpt(original, tmp_path / "a.ckpt"), "iresnet18", tmp_path / "m.pt").path
    lfw = write_lfw_like(SyntheticFaceWorld(seed=0, size=32), tmp_path / "lfw", folds=2, pairs_per_fold=3,
                         identities_per_fold=3, images_per_identity=2, progress=False)
    embedder, info = load_embedder(model_file)
    ours = evaluate_protocol(f"lfw={lfw}", embedder, image_size=info["image_size"], folds=2)
    theirs = evaluate_protocol(f"lfw={lfw}", _AdaFaceInference(original), image_size=32, folds=2)
    assert ours.scores is not None and len(ours.scores) == 12
    torch.testing.assert_close(torch.as_tensor(ours.scores), torch.as_tensor(theirs.scores), rtol=1e-5, atol=1e-5)
    assert ours.metrics["auc"] == pytest.approx(theirs.metrics["auc"])
