"""pyfacex eval on models that are not pyfacex model files: an exported .onnx file (through onnxruntime)
and a peer's weights read by --weights/--arch without converting first. Both must give the numbers of
the model file they stand for."""
import pytest
import torch

from pyfacex.cli import main
from pyfacex.data.synthetic import SyntheticFaceWorld
from pyfacex.data.synthetic.protocols import write_lfw_like
from pyfacex.eval import ResultsTable

KWARGS = {"widths": [4, 4, 8, 8], "num_features": 8, "input_size": 32}   # iresnet18's (2, 2, 2, 2) blocks


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model_file):
    """A model file, the same weights as an arcface_torch-style backbone.pth, and a tiny LFW-like set."""
    base = tmp_path_factory.mktemp("eval_foreign")
    model = tiny_model_file(base / "model.pt", KWARGS)
    torch.save(model.state_dict(), base / "backbone.pth")   # pyfacex's iResNet names its tensors as arcface_torch
    lfw = write_lfw_like(SyntheticFaceWorld(seed=0, size=32), base / "lfw", folds=2, pairs_per_fold=3,
                         identities_per_fold=3, images_per_identity=2, progress=False)
    return base, lfw


def _row(out) -> dict:
    (values,) = [r["values"] for r in ResultsTable.from_json((out / "results.json").read_text()).to_dict()["rows"]]
    return values


def _same(a: dict, b: dict) -> None:
    for key in ("lfw AUC", "lfw EER"):
        assert a[key] == pytest.approx(b[key], abs=1e-6), key
    assert a["lfw accuracy"] == pytest.approx(b["lfw accuracy"], abs=1e-6)


def test_weights_and_arch_evaluate_a_peer_checkpoint_as_its_model_file(files, tmp_path):
    base, lfw = files
    assert main(["eval", str(base / "model.pt"), f"lfw={lfw}", "--folds", "2", "--out", str(tmp_path / "pt")]) == 0
    assert main(["eval", "--arch", "iresnet18", "--weights", str(base / "backbone.pth"), f"lfw={lfw}", "--folds", "2",
                 "--out", str(tmp_path / "pth")]) == 0
    _same(_row(tmp_path / "pth"), _row(tmp_path / "pt"))


def test_onnx_file_evaluates_as_its_model_file(files, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from pyfacex.export import export_model

    base, lfw = files
    export_model(base / "model.pt", tmp_path / "model.onnx")
    assert main(["eval", str(base / "model.pt"), f"lfw={lfw}", "--folds", "2", "--out", str(tmp_path / "pt")]) == 0
    assert main(["eval", str(tmp_path / "model.onnx"), f"lfw={lfw}", "--folds", "2",
                 "--out", str(tmp_path / "onnx")]) == 0
    _same(_row(tmp_path / "onnx"), _row(tmp_path / "pt"))
    assert main(["eval", str(tmp_path / "model.onnx"), f"lfw={lfw}", "--calibrate", "0.5"]) == 2


@pytest.mark.parametrize("argv, message", [
    (["--weights", "{base}/backbone.pth", "{lfw}"], "--weights: needs --arch"),
    (["{base}/model.pt", "{lfw}", "--arch", "iresnet18"], "--arch: applies to --weights"),
    (["{base}/model.pt"], "PROTOCOL: expected at least one protocol"),
    (["--arch", "iresnet50", "--weights", "{base}/backbone.pth", "{lfw}"], "iresnet50"),
    (["--arch", "iresnet18", "--weights", "{base}/missing.pth", "{lfw}"], "--weights"),
    (["--arch", "iresnet18", "--weights", "{base}/backbone.pth", "{lfw}", "--calibrate", "0.1"], "--calibrate"),
    (["{base}/junk.pt", "{lfw}"], "not a pyfacex model file"),
])
def test_errors_name_the_argument(files, argv, message, capsys):
    base, lfw = files
    (base / "junk.pt").write_bytes(b"\x00\x01\x02\x03")
    assert main(["eval", *(a.format(base=base, lfw=lfw) for a in argv)]) == 2
    assert message in capsys.readouterr().err
