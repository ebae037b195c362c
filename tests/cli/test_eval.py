"""pyfacex eval: a model file written by save_model on a tiny synthetic LFW-like protocol."""

import numpy as np
import pytest
import torch

from pyfacex.backbones.iresnet import iresnet18
from pyfacex.cli import main
from pyfacex.data.synthetic import SyntheticFaceWorld
from pyfacex.eval import ResultsTable, evaluate_protocol
from pyfacex.train.checkpoint import load_embedder, save_model

KWARGS = {"layers": [1, 1, 1, 1], "widths": [4, 4, 8, 8], "num_features": 8, "input_size": 32}


@pytest.fixture(scope="module")
def files(tiny_lfw_files):
    return tiny_lfw_files


def test_eval_prints_and_writes_the_results(files, tmp_path, capsys):
    model_file, lfw = files
    out = tmp_path / "out"
    status = main(["eval", str(model_file), f"lfw={lfw}", f"asbin={lfw / 'lfw.bin'}", "--out", str(out),
                   "--batch-size", "5", "--folds", "2"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "lfw accuracy" in captured.out and "iresnet18" in captured.out and "lfw AUC" in captured.out
    assert "TAR@FAR" not in captured.out  # 6 impostor pairs cannot resolve a FAR of 1e-3
    assert {p.name for p in out.iterdir()} == {"results.json", "results.md", "roc_lfw.png", "roc_asbin.png",
                                               "scores", "features"}
    assert (out / "roc_lfw.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p.name for p in (out / "scores").iterdir()} == {"lfw.npy", "lfw_label.npy", "asbin.npy", "asbin_label.npy"}
    assert {p.name for p in (out / "features").iterdir()} == {"lfw_embeddings.npy", "asbin_embeddings.npy"}

    table = ResultsTable.from_json((out / "results.json").read_text())
    (row, values), = [(r["name"], r["values"]) for r in table.to_dict()["rows"]]
    assert row == "iresnet18"
    embedder, info = load_embedder(model_file)
    expected = evaluate_protocol(f"lfw={lfw}", embedder, image_size=info["image_size"])
    assert values["lfw accuracy"] == [expected.metrics["accuracy"], expected.metrics["accuracy_std"]]
    assert values["lfw AUC"] == expected.metrics["auc"]
    assert values["lfw EER"] == expected.metrics["eer"]
    # the dumps are the scored pairs: cosines of rows 2p and 2p + 1 of the (normalised) embeddings
    scores, labels = np.load(out / "scores" / "lfw.npy"), np.load(out / "scores" / "lfw_label.npy")
    np.testing.assert_allclose(scores, expected.scores, rtol=0, atol=1e-6)   # other batch sizes: other GEMMs
    np.testing.assert_array_equal(labels, expected.is_genuine)
    embeddings = np.load(out / "features" / "lfw_embeddings.npy")
    assert embeddings.shape == (2 * len(scores), 8) and embeddings.dtype == np.float32
    np.testing.assert_allclose((embeddings[0::2] * embeddings[1::2]).sum(1), scores, atol=1e-6)
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


# ----------------------------------------------------------------------------------------------------
# set models: IJB-A with the model's own set function and the "Baseline (Avg.)"

LFENET = {"backbone_kwargs": {"layers": [1, 1, 1, 1], "widths": [8, 8, 16, 16], "num_features": 16,
                              "input_size": 32}, "segment": 2, "scale": 30.0}


@pytest.fixture(scope="module")
def set_files(tmp_path_factory):
    from pyfacex.data.synthetic.protocols import write_ijba_like
    from pyfacex.models import create_model

    base = tmp_path_factory.mktemp("eval_cli_sets")
    torch.manual_seed(0)
    model = create_model("lfenet_r50", **LFENET)
    with torch.no_grad():                       # a LIT that is not the identity
        torch.nn.init.normal_(model.lit.value.weight, std=2.0)
    save_model(base / "lfenet.pt", model, name="lfenet_r50", kwargs=LFENET, image_size=32)
    ijba = write_ijba_like(SyntheticFaceWorld(seed=0, size=32), base / "ijba", subjects=5, splits=2, test_subjects=3,
                           stills=(1, 2), videos=(0, 1), frames_per_video=(2, 3), impostors_per_template=2,
                           progress=False)
    return base / "lfenet.pt", ijba


def test_eval_ijba_runs_the_models_set_function_and_the_baseline(set_files, tmp_path, capsys):
    from pyfacex.train.checkpoint import embedder_for, load_model

    model_file, ijba = set_files
    rows = {}
    for choice in ("default", "mean"):
        extra = [] if choice == "default" else ["--set-function", "mean"]
        command = ["eval", str(model_file), f"ijba:{ijba}", "--no-flip", "--out", str(tmp_path / choice)]
        assert main(command + extra) == 0
        printed = capsys.readouterr().out
        assert f"set function: {'model' if choice == 'default' else 'mean'}" in printed
        assert "ijba TAR@FAR=1e-3 (interp.)" in printed and " ± " in printed
        table = ResultsTable.from_json((tmp_path / choice / "results.json").read_text())
        rows[choice] = table.to_dict()["rows"][0]["values"]
    whole, _ = load_model(model_file)
    for choice, set_function in (("default", "model"), ("mean", "mean")):
        expected = evaluate_protocol(f"ijba:{ijba}", embedder_for(whole), set_model=whole, set_function=set_function,
                                     flip=False, image_size=32)
        for far in ("1e-3", "1e-2", "1e-1"):
            key = f"TAR@FAR={far} (interp.)"
            assert rows[choice][f"ijba {key}"] == [expected.metrics[key], expected.metrics[key + " std"]]
    model_scores = evaluate_protocol(f"ijba:{ijba}", embedder_for(whole), set_model=whole, flip=False,
                                     image_size=32).scores
    mean_scores = evaluate_protocol(f"ijba:{ijba}", embedder_for(whole), set_model=whole, set_function="mean",
                                    flip=False, image_size=32).scores
    assert abs(model_scores - mean_scores).max() > 1e-4


def test_eval_set_function_model_needs_a_set_model(files, set_files, capsys):
    model_file, _ = files
    _, ijba = set_files
    assert main(["eval", str(model_file), f"ijba:{ijba}", "--set-function", "model"]) == 2
    assert "--set-function: model needs a model with its own set function" in capsys.readouterr().err


def test_eval_ytf_with_the_aggregator_and_the_blur_protocol(tmp_path, capsys):
    """The Face Aggregation Network's "ours" (aggregate N frames, embed) from its model file, plain and
    with motion blur on 9 of 10 frames (Tab. 4), against the "avg" baseline."""
    from pyfacex.data.synthetic.protocols import write_ytf_like
    from pyfacex.models import create_model
    from pyfacex.train.checkpoint import embedder_for, load_model

    kwargs = {"reconstruction": "average", "widths": [4, 4, 8, 8, 8], "discriminator_widths": [4, 4, 8, 8],
              "input_size": 32, "embedding_size": 8,
              "extractor": {"embedder_of": {"name": "iresnet18", "kwargs": KWARGS}}}
    torch.manual_seed(0)
    model = create_model("faceagg_unet", **{**kwargs, "extractor": iresnet18(**KWARGS)})
    save_model(tmp_path / "faceagg.pt", model, name="faceagg_unet", kwargs=kwargs, image_size=32)
    ytf = write_ytf_like(SyntheticFaceWorld(seed=0, size=32), tmp_path / "ytf", splits=2, pairs_per_split=2,
                         identities_per_split=2, videos_per_identity=2, frames_per_video=(3, 4), progress=False)
    rows = {}
    for choice in ("model", "mean"):
        out = tmp_path / choice
        assert main(["eval", str(tmp_path / "faceagg.pt"), f"ytf={ytf}", f"{ytf}@blur9", "--set-function", choice,
                     "--out", str(out)]) == 0
        assert f"set function: {choice}" in capsys.readouterr().out
        rows[choice] = ResultsTable.from_json((out / "results.json").read_text()).to_dict()["rows"][0]["values"]
    whole, _ = load_model(tmp_path / "faceagg.pt")
    for spec, name in ((f"ytf={ytf}", "ytf"), (f"{ytf}@blur9", "ytf@blur9")):
        expected = evaluate_protocol(spec, embedder_for(whole), set_model=whole, set_function="model", image_size=32)
        assert rows["model"][f"{name} AUC"] == expected.metrics["auc"]
    avg = evaluate_protocol(f"ytf={ytf}", embedder_for(whole), set_model=whole, set_function="mean", image_size=32)
    assert rows["mean"]["ytf AUC"] == avg.metrics["auc"]
