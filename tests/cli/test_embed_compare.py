"""pyfacex embed, pyfacex compare and pyfacex eval --calibrate on tiny models and synthetic faces."""
import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pyfacex.cli import main
from pyfacex.data.synthetic import SyntheticFaceWorld
from pyfacex.data.synthetic.protocols import write_lfw_like
from pyfacex.embed import FaceEmbedder, load_embeddings
from pyfacex.embed.calibration import calibrate_threshold
from pyfacex.eval import evaluate_protocol
from pyfacex.train.checkpoint import load_embedder, safe_load

_NAME = "pyfacex_embed_test_fixtures"      # tests/embed/fixtures.py, shared with the embed tests
if _NAME not in sys.modules:
    _SPEC = importlib.util.spec_from_file_location(_NAME, Path(__file__).parents[1] / "embed" / "fixtures.py")
    sys.modules[_NAME] = importlib.util.module_from_spec(_SPEC)
    _SPEC.loader.exec_module(sys.modules[_NAME])
_F = sys.modules[_NAME]
one_thread, model_112, photos, crops = _F.one_thread, _F.model_112, _F.photos, _F.crops


def _sidecar(path: Path, names, points) -> Path:
    rows = ["path,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5"]
    rows += [f"{n}," + ",".join(repr(v) for v in p.flatten().tolist()) for n, p in zip(names, points)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_embed_a_folder_of_crops(model_112, crops, tmp_path, capsys):
    folder, images = crops
    out = tmp_path / "feats.npz"
    assert main(["embed", str(model_112), str(folder), "--out", str(out), "--workers", "0", "--batch-size", "4",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr()
    assert f"wrote {out}: 6 embeddings of size 8 (taken as aligned crops" in printed.out
    assert "embed: 100%" in printed.err                               # the progress bar
    saved = load_embeddings(out)
    assert saved.paths[:2] == ["id0/0.png", "id0/1.png"]
    expected, norms = FaceEmbedder(model_112).embed(images, return_norms=True)
    torch.testing.assert_close(saved.embeddings, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(saved.norms, norms, rtol=1e-6, atol=0)
    assert saved.exif_applied and saved.flip and saved.landmarks is None
    assert main(["embed", str(model_112), str(folder), "--out", str(out), "--workers", "0", "--no-exif",
                 "--no-flip"]) == 0
    plain = load_embeddings(out)
    assert not plain.exif_applied and not plain.flip
    torch.testing.assert_close(plain.embeddings, FaceEmbedder(model_112, flip=False).embed(images), rtol=0, atol=1e-6)


def test_embed_with_landmarks_in_the_input_or_a_sidecar(model_112, photos, tmp_path, capsys):
    listing = tmp_path / "faces.csv"       # 68 points in the INPUT CSV, absolute paths
    listing.write_text("".join(f"{photos.folder / n}," + ",".join(repr(v) for v in p.flatten().tolist()) + "\n"
                               for n, p in zip(photos.names, photos.landmarks68)))
    assert main(["embed", str(model_112), str(listing), "--out", str(tmp_path / "a.npz"), "--workers", "0"]) == 0
    sidecar = _sidecar(photos.folder / "landmarks.csv", photos.names, photos.landmarks5)
    assert main(["embed", str(model_112), str(photos.folder), "--landmarks", str(sidecar), "--out",
                 str(tmp_path / "b.npz"), "--workers", "2"]) == 0
    assert "aligned by landmarks" in capsys.readouterr().out
    a, b = load_embeddings(tmp_path / "a.npz"), load_embeddings(tmp_path / "b.npz")
    assert b.paths == photos.names and a.paths == [str(photos.folder / n) for n in photos.names]
    expected = FaceEmbedder(model_112).embed(photos.images, photos.landmarks5)
    torch.testing.assert_close(a.embeddings, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(b.embeddings, expected, rtol=0, atol=1e-4)   # the sidecar holds float32 points
    torch.testing.assert_close(b.landmarks, photos.landmarks5.float())


def test_embed_bad_images_stop_the_run_unless_skipped(model_112, photos, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.png").write_bytes((photos.folder / photos.names[0]).read_bytes())
    (folder / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "feats.npz"
    assert main(["embed", str(model_112), str(folder), "--out", str(out), "--workers", "0"]) == 2
    error = capsys.readouterr().err
    assert re.search(r"pyfacex embed: error: .*b\.jpg: cannot decode image .*--skip-bad", error)
    assert not out.exists()
    assert main(["embed", str(model_112), str(folder), "--out", str(out), "--workers", "0", "--skip-bad"]) == 0
    assert "skipped 1 unreadable image(s):" in capsys.readouterr().err
    with np.load(out, allow_pickle=False) as saved:
        assert saved["paths"].tolist() == ["a.png"] and saved["skipped"].tolist() == ["b.jpg"]
        assert "cannot decode image" in saved["skipped_errors"][0]


def test_embed_argument_errors(model_112, tmp_path, capsys):
    assert main(["embed", str(model_112), str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.npz")]) == 2
    assert "INPUT: " in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "missing.pt"), str(tmp_path), "--out", str(tmp_path / "x.npz")]) == 2
    assert "missing.pt does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["embed", str(model_112), str(tmp_path)])                      # --out is required
    capsys.readouterr()


def test_compare_without_a_threshold_says_how_to_get_one(model_112, photos, capsys):
    sidecar = _sidecar(photos.folder / "pair.csv", photos.names[:2], photos.landmarks5[:2])
    a, b = (str(photos.folder / n) for n in photos.names[:2])
    assert main(["compare", str(model_112), a, b, "--landmarks", str(sidecar), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    embeddings = FaceEmbedder(model_112).embed(photos.images[:2], photos.landmarks5[:2])
    assert f"cosine: {float(embeddings[0] @ embeddings[1]):.4f}" in printed
    assert "no decision" in printed and "--calibrate 1e-4" in printed
    assert main(["compare", str(model_112), a, a, "--threshold", "0.9"]) == 0
    printed = capsys.readouterr().out
    assert "cosine: 1.0000" in printed and "threshold: 0.9000 (given by --threshold)" in printed
    assert printed.rstrip().endswith("same person")
    assert main(["compare", str(model_112), a, str(photos.folder / "missing.png")]) == 2
    assert "missing.png: cannot read the file" in capsys.readouterr().err


@pytest.fixture(scope="module")
def lfw(tmp_path_factory):
    # 2 folds × 10 mismatched pairs: 20 impostor pairs, enough for a FAR of 0.1
    return write_lfw_like(SyntheticFaceWorld(seed=3, size=112), tmp_path_factory.mktemp("lfw") / "lfw", folds=2,
                          pairs_per_fold=10, identities_per_fold=5, images_per_identity=3, progress=False)


def test_eval_calibrate_then_compare_decides(model_112, lfw, tmp_path, capsys):
    model = tmp_path / "model.pt"
    model.write_bytes(model_112.read_bytes())
    assert main(["eval", str(model), f"lfw={lfw}", "--calibrate", "0.1", "--folds", "2", "--batch-size", "8"]) == 0
    printed = capsys.readouterr().out
    record = safe_load(model)["calibration"]
    embedder, _ = load_embedder(model)
    result = evaluate_protocol(f"lfw={lfw}", embedder, image_size=112)
    expected = calibrate_threshold(torch.as_tensor(result.scores), torch.as_tensor(result.is_genuine), 0.1)
    assert record["threshold"] == pytest.approx(expected["threshold"], abs=1e-6)
    assert record["measured_far"] <= 0.1 and record["impostors"] == 20 and record["genuine"] == 20
    assert (record["far"], record["kind"], record["flip"], record["protocol"]) == (0.1, "lfw", True, f"lfw=lfw:{lfw}")
    assert f"stored in {model}: threshold {record['threshold']:.4f} at FAR 0.1 on lfw=lfw:{lfw}" in printed

    pairs = (lfw / "pairs.txt").read_text().splitlines()
    name, first, second = pairs[1].split("\t")                 # a matched pair of fold 1
    a, b = (lfw / "lfw" / name / f"{name}_{int(n):04d}.jpg" for n in (first, second))
    assert main(["compare", str(model), str(a), str(b)]) == 0
    printed = capsys.readouterr().out
    cosine = float(re.search(r"cosine: (-?[0-9.]+)", printed).group(1))
    assert f"threshold: {record['threshold']:.4f} (FAR 0.1 on lfw=lfw:{lfw}" in printed
    assert printed.rstrip().endswith("same person" if cosine >= record["threshold"] else "different people")


def test_eval_calibrate_errors(model_112, lfw, tmp_path, capsys):
    model = tmp_path / "model.pt"
    model.write_bytes(model_112.read_bytes())
    assert main(["eval", str(model), f"lfw={lfw}", "--calibrate", "0.01", "--folds", "2"]) == 2
    captured = capsys.readouterr()
    assert "lfw accuracy" in captured.out                     # the evaluation itself is printed first
    assert "far: 0.01 cannot be measured on 20 impostor pairs" in captured.err
    assert "calibration" not in safe_load(model)
    two = [f"lfw={lfw}", f"bin={lfw / 'lfw.bin'}"]
    assert main(["eval", str(model), *two, "--calibrate", "0.1"]) == 2             # before any work
    assert "name it with --calibrate-on NAME" in capsys.readouterr().err
    assert main(["eval", str(model), *two, "--calibrate-on", "bin"]) == 2
    assert "--calibrate-on: needs --calibrate FAR" in capsys.readouterr().err
    assert main(["eval", str(model), f"lfw={lfw}", "--calibrate", "2"]) == 2
    assert "--calibrate: expected a false accept rate in (0, 1)" in capsys.readouterr().err
    assert main(["eval", str(model), *two, "--calibrate", "0.1", "--calibrate-on", "bin", "--folds", "2"]) == 0
    assert safe_load(model)["calibration"]["protocol"] == f"bin=bin:{lfw / 'lfw.bin'}"
