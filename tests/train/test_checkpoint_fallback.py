"""A damaged newest checkpoint does not end a run: ``--resume`` names the file and why and falls back to
the newest intact checkpoint; a damaged model file given to eval, embed or export is named, not a raw
zip-reader traceback."""
import json
import shutil

import pytest
import torch

from pyfacex.cli import main
from pyfacex.data import write_verification_bin
from pyfacex.train import create_trainer
from pyfacex.train.checkpoint import CheckpointError, UnreadableFileError, load_model, resume_candidates

from .test_trainer import assert_same_states, make_config, states


def _truncate(path, keep=100):
    path.write_bytes(path.read_bytes()[:keep])


@pytest.fixture
def run(tiny_faces, tmp_path):
    """A finished 6-step run with a checkpoint after every step (the newest three kept)."""
    config = make_config(tiny_faces, tmp_path / "run", checkpoint_every=1, keep_checkpoints=3)
    trainer = create_trainer(config)
    trainer.fit()
    return tiny_faces, tmp_path / "run", trainer


def test_a_truncated_newest_checkpoint_falls_back_and_the_run_ends_as_uninterrupted(run, tmp_path):
    faces, output, full = run
    partial = tmp_path / "partial"
    shutil.copytree(output, partial)
    shutil.rmtree(partial / "checkpoints" / "step_00000006")  # stopped after step 5 ...
    (partial / "checkpoints" / "latest").write_text("step_00000005\n")
    _truncate(partial / "checkpoints" / "step_00000005" / "shared.pt")  # ... its newest file cut short
    resumed = create_trainer(make_config(faces, partial, checkpoint_every=1, keep_checkpoints=3))
    with pytest.warns(RuntimeWarning, match=r"resuming from .*step_00000004, the newest intact checkpoint; skipped: "
                                            r".*step_00000005/shared.pt cannot be read \(100 bytes; "):
        resumed.fit(resume="auto")
    assert resumed.step == 6
    assert_same_states(states(full), states(resumed))  # steps 5 and 6 redone exactly


def test_a_rank_file_and_a_wrong_step_are_damage_too(run):
    _, output, _ = run
    checkpoints = output / "checkpoints"
    _truncate(checkpoints / "step_00000006" / "rank0.pt", keep=0)
    older = (checkpoints / "step_00000004" / "shared.pt").read_bytes()
    (checkpoints / "step_00000005" / "shared.pt").write_bytes(older)
    config = make_config(run[0], output, checkpoint_every=1, keep_checkpoints=3, max_steps=7)
    trainer = create_trainer(config)
    with pytest.warns(RuntimeWarning) as warned:
        trainer.restore("auto")
    message = str(warned[0].message)
    assert "rank0.pt cannot be read (0 bytes; " in message
    assert "step_00000005/shared.pt holds step 4, not the step of its folder step_00000005" in message
    assert trainer.step == 4


def test_no_intact_checkpoint_is_an_error_naming_every_file(run):
    _, output, _ = run
    for folder in resume_candidates(output / "checkpoints"):
        _truncate(folder / "shared.pt")
    trainer = create_trainer(make_config(run[0], output, checkpoint_every=1))
    with pytest.raises(CheckpointError, match=r"no intact checkpoint under .*checkpoints to resume from: .*"
                                              r"step_00000006/shared.pt .*step_00000005/shared.pt .*"
                                              r"step_00000004/shared.pt"):
        trainer.restore("auto")


def test_a_named_damaged_folder_is_an_error_not_a_fallback(run):
    _, output, _ = run
    _truncate(output / "checkpoints" / "step_00000005" / "rank0.pt")
    trainer = create_trainer(make_config(run[0], output))
    with pytest.raises(CheckpointError, match=r"step_00000005/rank0.pt cannot be read \(100 bytes; "):
        trainer.restore(output / "checkpoints" / "step_00000005")


def test_the_cli_reports_a_damaged_checkpoint_on_one_line(run, capsys):
    _, output, _ = run
    for folder in resume_candidates(output / "checkpoints"):
        _truncate(folder / "shared.pt")
    config = output / "config.yaml"
    config.write_text(json.dumps({"model": {"name": "iresnet18", "kwargs": {
        "layers": [1, 1, 1, 1], "widths": [8, 8, 16, 16], "num_features": 16, "input_size": 32}},
        "data": {"train": str(run[0]), "batch_size": 8, "num_workers": 0, "image_size": 32, "augment": []},
        "epochs": 1, "device": "cpu", "progress": False, "output": str(output)}))
    assert main(["train", str(config), "--resume"]) != 0
    error = capsys.readouterr().err
    assert "pyfacex train: error: no intact checkpoint under" in error and "Traceback" not in error


@pytest.mark.parametrize("command", ["eval", "embed", "export"])
def test_a_damaged_model_file_is_named(run, tmp_path, capsys, command):
    _, output, _ = run
    model = output / "model.pt"
    _truncate(model, keep=2000)
    with pytest.raises(UnreadableFileError, match=r"model.pt cannot be read \(2000 bytes; "):
        load_model(model)
    pairs = tmp_path / "pairs.bin"
    write_verification_bin(pairs, torch.zeros(4, 3, 32, 32, dtype=torch.uint8), [True, False])
    arguments = {"eval": ["eval", str(model), str(pairs)],
                 "embed": ["embed", str(model), str(tmp_path), "--out", str(tmp_path / "e.npy")],
                 "export": ["export", str(model), "--out", str(tmp_path / "m.onnx")]}[command]
    assert main(arguments) != 0
    error = capsys.readouterr().err
    assert "model.pt" in error and "cannot be read" in error and "Traceback" not in error
