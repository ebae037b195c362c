"""``pyfacex train`` and ``pyfacex demo`` on tiny inputs."""
import json

import pytest
import torch
import yaml

from pyfacex.cli import main
from pyfacex.data.synthetic import Nuisance, SyntheticFaceWorld
from pyfacex.data.synthetic.export import write_training_set
from pyfacex.eval import ResultsTable
from pyfacex.train import load_embedder

TINY = {"layers": [1, 1, 1, 1], "widths": [8, 8, 16, 16], "num_features": 16, "input_size": 32}


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    world = SyntheticFaceWorld(seed=0, size=32, nuisance=Nuisance(difficulty=0.2))
    faces = write_training_set(world, root / "faces", 6, 4, formats=("record",), progress=False)
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"name": "iresnet18", "kwargs": TINY},
        "data": {"train": str(faces), "batch_size": 8, "image_size": 32, "num_workers": 0, "augment": ["flip"]},
        "epochs": 2, "device": "cpu", "progress": False, "output": str(root / "run"), "checkpoint_every": 2}))
    return path


def test_train_runs_a_recipe_with_overrides_and_resumes(recipe, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(recipe), "--set", "optim.lr=0.02", "--set", "epochs=1", "--output", str(out)]) == 0
    assert "trained 3 steps" in capsys.readouterr().err
    start = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["config"]["optim"]["lr"] == 0.02
    assert start["config"]["data"]["augment"] == ["flip"] and start["total_steps"] == 3
    embedder, info = load_embedder(out / "model.pt")
    assert embedder(torch.zeros(1, 3, 32, 32)).shape == (1, 16)
    # --resume continues from OUTPUT/checkpoints/latest: with epochs=2 only the second epoch runs
    assert main(["train", str(recipe), "--set", "epochs=2", "--output", str(out), "--resume"]) == 0
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if line["event"] == "start"] == [0, 3]


def test_print_config_shows_the_resolved_values(recipe, capsys):
    assert main(["train", str(recipe), "--set", "head.kind=cosface", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["head"]["kind"] == "cosface" and printed["model"]["kwargs"] == TINY
    assert printed["optim"]["lr"] == 0.1  # a default the recipe did not state


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=0.1", "unknown config key optim.lrr; valid keys of optim: name, lr, momentum"),
    ("epochs=two", "epochs: expected int, got str 'two'"),
    ("trainer=nope", "trainer: expected one of classification, sets"),
])
def test_a_bad_config_fails_with_a_message(recipe, capsys, override, message):
    assert main(["train", str(recipe), "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyfacex train: error: ") and message in err


def test_demo_on_tiny_settings(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--identities", "6", "--per-id", "4", "--test-identities", "20",
            "--epochs", "1", "--image-size", "32", "--batch-size", "8"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "ArcFace" in printed and "LGAF" in printed and "tinyface rank-1" in printed
    table = ResultsTable.from_json((out / "results.json").read_text())
    rows = {row["name"]: row["values"] for row in table.to_dict()["rows"]}
    assert set(rows) == {"ArcFace", "LGAF"}
    assert all(0.0 <= values["lfw AUC"] <= 1.0 for values in rows.values())
    assert {p.name for p in out.glob("roc_*.png")} == {"roc_lfw.png", "roc_cfp-fp.png"}
    assert yaml.safe_load((out / "lgaf.yaml").read_text())["model"]["name"] == "lgaf_r50"
    stamp = (out / "data" / "settings.json").stat().st_mtime_ns
    assert main(args) == 0  # the rendered data of the same settings is reused
    assert (out / "data" / "settings.json").stat().st_mtime_ns == stamp


def test_set_takes_several_overrides_at_once(recipe, capsys):
    assert main(["train", str(recipe), "--set", "optim.lr=0.05", "epochs=3", "--set", "seed=4", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (printed["optim"]["lr"], printed["epochs"], printed["seed"]) == (0.05, 3, 4)
