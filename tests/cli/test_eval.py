"""pyfacex eval: a model file written by save_model on a tiny synthetic LFW-like protocol."""

import pytest
import torch

from pyfacex.backbones.iresnet import iresnet18
from pyfacex.cli import main
from pyfacex.data.synthetic import SyntheticFaceWorld
from pyfacex.data.synthetic.protocols import write_lfw_like
from pyfacex.eval import ResultsTable, evaluate_protocol
from pyfacex.train.checkpoint import load_embedder, save_model

KWARGS = {"layers": [1, 1, 1, 1], "widths": [4, 4, 8, 8], "num_features": 8, "input_size": 32}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval_cli")
    torch.manual_seed(0)
    model = iresnet18(**KWARGS)
    with torch.no_grad():            # non-trivial BatchNorm statistics, so embeddings differ per image
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    save_model(base / "model.pt", model, name="iresnet18", kwargs=KWARGS, image_size=32)
    lfw = write_lfw_like(SyntheticFaceWorld(seed=0, size=32), base / "lfw", folds=2, pairs_per_fold=3,
                         identities_per_fold=3, images_per_identity=2, progress=False)
    return base / "model.pt", lfw


def test_eval_prints_and_writes_the_results(files, tmp_path, capsys):
    model_file, lfw = files
    out = tmp_path / "out"
    status = main(["eval", str(model_file), f"lfw={lfw}", f"asbin={lfw / 'lfw.bin'}", "--out", str(out),
                   "--batch-size", "5", "--folds", "2"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "lfw accuracy" in captured.out and "iresnet18" in captured.out and "lfw AUC" in captured.out
    assert "TAR@FAR" not in captured.out  # 6 impostor pairs cannot resolve a FAR of 1e-3
    assert {p.name for p in out.iterdir()} == {"results.json", "results.md", "roc_lfw.png", "roc_asbin.png"}
    assert (out / "roc_lfw.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    table = ResultsTable.from_json((out / "results.json").read_text())
    (row, values), = [(r["name"], r["values"]) for r in table.to_dict()["rows"]]
    assert row == "iresnet18"
    embedder, info = load_embedder(model_file)
    expected = evaluate_protocol(f"lfw={lfw}", embedder, image_size=info["image_size"])
    assert values["lfw accuracy"] == [expected.metrics["accuracy"], expected.metrics["accuracy_std"]]
    assert values["lfw AUC"] == expected.metrics["auc"]
    assert values["lfw EER"] == expected.metrics["eer"]
    # the .bin of the same pairs with the same 2 folds gives the same numbers
    assert values["asbin accuracy"] == values["lfw accuracy"] and values["asbin EER"] == values["lfw EER"]
    markdown = (out / "results.md").read_text()
    assert markdown.startswith("**pyfacex eval: model.pt") and "| model | lfw accuracy | lfw AUC |" in markdown


def test_eval_name_and_no_flip(files, capsys):
    model_file, lfw = files
    assert main(["eval", str(model_file), f"bin:{lfw / 'lfw.bin'}", "--name", "mine", "--no-flip",
                 "--device", "cpu", "--folds", "2"]) == 0
    printed = capsys.readouterr().out
    assert "\nmine " in printed and "no flip" in printed
    embedder, _ = load_embedder(model_file)
    expected = evaluate_protocol(lfw / "lfw.bin", embedder, image_size=32, flip=False, folds=2)
    assert f"{expected.metrics['auc']:.4f}" in printed


def test_eval_errors(files, tmp_path, capsys):
    model_file, lfw = files
    assert main(["eval", str(tmp_path / "missing.pt"), str(lfw)]) == 2
    assert "MODEL: " in capsys.readouterr().err
    assert main(["eval", str(model_file), str(tmp_path / "nowhere")]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err
    assert main(["eval", str(model_file), str(tmp_path)]) == 2
    assert "no protocol layout" in capsys.readouterr().err
    assert main(["eval", str(model_file), f"a={lfw}", f"a={lfw / 'lfw.bin'}"]) == 2
    assert "both named 'a'" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    assert main(["eval", str(tmp_path / "junk.pt"), str(lfw)]) == 2
    assert "junk.pt" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(model_file), str(lfw), "--batch-size", "0"])
    assert exit_info.value.code == 2 and "--batch-size" in capsys.readouterr().err
