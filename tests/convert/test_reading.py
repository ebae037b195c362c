"""Reading foreign torch files safely; telling the sources apart; errors for what is none of them."""
import collections
import pickle

import pytest
import torch

from pyfacex.convert import detect_source, import_model
from pyfacex.convert.reading import Inert, find_backbone, load_foreign_torch
from pyfacex.train.checkpoint import save_model


def tiny_arcface(peers):
    return peers.randomise(peers.ArcfaceIResNet(peers.STAGE_LAYERS[18], **peers.TINY))


def test_refused_metadata_comes_back_inert_and_runs_nothing(peers, tmp_path):
    network = peers.randomise(peers.AdaFaceIR(peers.STAGE_LAYERS[18], **peers.TINY))
    src = peers.save_adaface_ckpt(network, tmp_path / "a.ckpt", odd_metadata=True)
    with pytest.raises(pickle.UnpicklingError):   # the premise: plain weights_only loading refuses the file
        torch.load(src, weights_only=True)
    peers.NotCalled.calls.clear()
    checkpoint = load_foreign_torch(src)
    hyper = checkpoint["hyper_parameters"]
    assert isinstance(hyper["args"], Inert) and isinstance(hyper["best"], Inert) and isinstance(hyper["hook"], Inert)
    assert peers.NotCalled.calls == []
    assert hyper["arch"] == "ir_50" and checkpoint["lr_schedulers"][0]["milestones"][20] == 1
    torch.testing.assert_close(checkpoint["state_dict"]["model.input_layer.0.weight"],
                               network.input_layer[0].weight.detach())


def test_objects_that_stay_unreadable_are_named(tmp_path):
    # a dict subclass is filled item by item, which the restricted unpickler allows for dicts only
    torch.save({"conv1.weight": torch.zeros(1), "meta": collections.defaultdict(list, {"a": [1]})}, tmp_path / "d.pth")
    with pytest.raises(ValueError, match=r"cannot be read safely \(globals .*collections\.defaultdict"):
        load_foreign_torch(tmp_path / "d.pth")


def test_detect_source_by_content(peers, tmp_path):
    arcface = tiny_arcface(peers)
    assert detect_source(peers.save_arcface_backbone(arcface, tmp_path / "weights.bin")) == "insightface"
    network = peers.randomise(peers.AdaFaceIR(peers.STAGE_LAYERS[18], **peers.TINY))
    assert detect_source(peers.save_adaface_ckpt(network, tmp_path / "adaface.pth")) == "adaface"
    pytest.importorskip("onnx")
    onnx_file = peers.export_arcface_onnx(arcface, tmp_path / "model.onnx")
    assert detect_source(onnx_file) == "onnx"
    no_suffix = tmp_path / "model_without_suffix"
    no_suffix.write_bytes(onnx_file.read_bytes())
    assert detect_source(no_suffix) == "onnx"


def test_unknown_source_types_are_named(peers, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not weights\n")
    with pytest.raises(ValueError, match="SRC: unknown source type: .*notes.txt is neither a torch file"):
        import_model(text, "iresnet18")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown source type: .*empty.pth is neither"):
        import_model(tmp_path / "empty.pth", "iresnet18")
    torch.save({"encoder.weight": torch.zeros(2), "decoder.bias": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="holds no iResNet backbone of insightface .* or adaface .* naming; "
                                         "it holds e.g. 'encoder.weight', 'decoder.bias'"):
        import_model(tmp_path / "other.pth", "iresnet18")
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="holds a list, not a state_dict"):
        import_model(tmp_path / "list.pth", "iresnet18")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        import_model(tmp_path / "absent.pth", "iresnet18")
    with pytest.raises(ValueError, match="--from must be auto or one of insightface, onnx, adaface, got 'mxnet'"):
        import_model(tmp_path / "other.pth", "iresnet18", source="mxnet")


def test_a_pyfacex_model_file_needs_no_conversion(peers, tmp_path):
    from pyfacex.backbones.iresnet import iresnet18

    model_file = save_model(tmp_path / "model.pt", iresnet18(**peers.TINY), name="iresnet18", kwargs=peers.TINY)
    with pytest.raises(ValueError, match="already a pyfacex model file"):
        import_model(model_file, "iresnet18")


def test_named_source_must_match_the_file(peers, tmp_path):
    src = peers.save_arcface_backbone(tiny_arcface(peers), tmp_path / "backbone.pth")
    with pytest.raises(ValueError, match="holds no iResNet backbone of adaface"):
        import_model(src, "iresnet18", source="adaface")
    assert import_model(src, "iresnet18", source="insightface")[1]["converted_from"]["source"] == "insightface"


def test_two_backbones_are_ambiguous(peers, tmp_path):
    state = tiny_arcface(peers).state_dict()
    both = {**{f"student.{k}": v for k, v in state.items()}, **{f"teacher.{k}": v for k, v in state.items()}}
    with pytest.raises(ValueError, match="holds 2 insightface backbones .*'student.', 'teacher.'.* ambiguous"):
        find_backbone(both, "distill.pth")
