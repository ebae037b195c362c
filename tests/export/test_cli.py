"""``pyfacex export``: files, messages and errors of the command."""
import shutil

import pytest
import torch

from pyfacex.cli import main
from pyfacex.export import load_exported
from pyfacex.train.checkpoint import load_embedder


def test_export_onnx_prints_what_it_wrote(kit, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "face.onnx"
    assert main(["export", str(kit.model_file("iresnet")), "--format", "onnx", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"wrote {out} (onnx, opset 18; (N, 3, 32, 32) -> (N, 16); min cosine" in captured.out
    assert "does not route a 32x32 model to ArcFaceONNX" in captured.err   # insightface's router needs S >= 112
    embedder, info = load_exported(out, "onnx", threads=1)
    x = kit.faces(2)
    with torch.no_grad():
        torch.testing.assert_close(embedder(x), load_embedder(kit.model_file("iresnet"))[0](x), rtol=1e-3, atol=1e-5)


def test_default_out_is_the_model_with_the_format_suffix(kit, tmp_path, capsys):
    model = shutil.copy(kit.model_file("iresnet"), tmp_path / "model.pt")
    assert main(["export", str(model), "--format", "exported-program", "--no-verify"]) == 0
    assert "not compared with the model" in capsys.readouterr().out
    assert (tmp_path / "model.pt2").is_file() and (tmp_path / "model.pt").is_file()
    assert load_exported(tmp_path / "model.pt2", "exported-program")[1]["name"] == "iresnet18"


def test_errors(kit, tmp_path, capsys):
    model = str(kit.model_file("iresnet"))
    with pytest.raises(SystemExit) as exit_info:
        main(["export", model, "--format", "tflite"])
    assert exit_info.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", model, "--opset", "16"])
    assert "expected an opset >= 17, got '16'" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert main(["export", str(tmp_path / "junk.pt"), "--format", "torchscript"]) == 2
    assert "pyfacex export: error: MODEL: " in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.pt"), "--format", "torchscript"]) == 2
    assert "missing.pt does not exist" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.ts"))
