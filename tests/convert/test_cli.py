"""pyfacex convert: the command line over pyfacex.convert."""
import pytest
import torch

from pyfacex.cli import main
from pyfacex.train.checkpoint import load_embedder


def test_convert_writes_a_model_file_eval_reads(peers, tmp_path, capsys):
    original = peers.randomise(peers.AdaFaceIR(peers.STAGE_LAYERS[18], **peers.TINY))
    src = peers.save_adaface_ckpt(original, tmp_path / "adaface_ir18.ckpt", arch="ir_18")
    out = tmp_path / "model.pt"
    status = main(["convert", str(src), "--arch", "iresnet18", "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert f"wrote {out}: iresnet18" in captured.out and "variant=adaface" in captured.out
    assert "reads BGR: the stem's input channels were reversed" in captured.out
    assert "4 entries outside the backbone left out" in captured.out
    embedder, info = load_embedder(out)
    x = peers.faces(2)
    with torch.no_grad():
        unit, norm = original(x.flip(1))
        torch.testing.assert_close(embedder(x), unit * norm, rtol=1e-4, atol=1e-4)


def test_convert_onnx_reports_the_check(peers, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    original = peers.randomise(peers.ArcfaceIResNet(peers.STAGE_LAYERS[18], **peers.TINY))
    src = peers.export_arcface_onnx(original, tmp_path / "model.onnx")
    assert main(["convert", str(src), "--arch", "iresnet18", "--out", str(tmp_path / "m.pt")]) == 0
    assert "onnxruntime agrees on 4 faces: min cosine 1.0000" in capsys.readouterr().out
    assert main(["convert", str(src), "--arch", "iresnet18", "--out", str(tmp_path / "n.pt"), "--no-check"]) == 0
    assert "not compared with the ONNX original (--no-check)" in capsys.readouterr().out


def test_errors_exit_2_with_the_reason(peers, tmp_path, capsys):
    original = peers.randomise(peers.ArcfaceIResNet(peers.STAGE_LAYERS[18], **peers.TINY))
    src = peers.save_arcface_backbone(original, tmp_path / "backbone.pth")
    out = tmp_path / "model.pt"
    assert main(["convert", str(src), "--arch", "iresnet34", "--out", str(out)]) == 2
    assert "pyfacex convert: error: SRC" in capsys.readouterr().err and not out.exists()
    assert main(["convert", str(src), "--arch", "vit_t", "--out", str(out)]) == 2
    assert "--arch must be one of" in capsys.readouterr().err
    out.write_bytes(b"x")
    assert main(["convert", str(src), "--arch", "iresnet18", "--out", str(out)]) == 2
    assert "exists (pass --overwrite" in capsys.readouterr().err
    assert main(["convert", str(src), "--arch", "iresnet18", "--out", str(out), "--overwrite"]) == 0
