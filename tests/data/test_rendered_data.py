"""Rendering a world's training set and protocols once per settings (pyfacex demo, pyfacex reproduce)."""
import json

import pytest

from pyfacex.data.synthetic.rendered_data import STAMP, check_settings, render_data, settings_key


def _settings(difficulty=0.2):
    return {"world": {"seed": 0, "size": 16, "nuisance": {"difficulty": difficulty}},
            "train": {"num_identities": 2, "per_identity": 2},
            "protocols": {"lfw": ["write_lfw_like", {"folds": 2, "identities_per_fold": 2, "pairs_per_fold": 2,
                                                     "images_per_identity": 2}]}}


def test_settings_key_ignores_key_order_and_sees_every_value():
    settings = _settings()
    reordered = {key: settings[key] for key in reversed(list(settings))}
    assert settings_key(settings) == settings_key(reordered)
    assert settings_key(settings) != settings_key(_settings(0.3))


def test_rendered_once_per_settings(tmp_path):
    root = render_data(tmp_path / "data", _settings(), progress=False)
    assert (root / "train" / "train.rec").is_file() and (root / "protocols" / "lfw" / "pairs.txt").is_file()
    assert json.loads((root / STAMP).read_text()) == _settings()
    stamp = (root / STAMP).stat().st_mtime_ns
    render_data(root, _settings(), progress=False)            # the same settings: nothing rendered
    assert (root / STAMP).stat().st_mtime_ns == stamp
    render_data(root, _settings(0.3), progress=False)         # other settings: rendered again
    assert json.loads((root / STAMP).read_text())["world"]["nuisance"]["difficulty"] == 0.3
    assert [p.name for p in tmp_path.iterdir()] == ["data"]   # no partial folder left beside it


@pytest.mark.parametrize("change, message", [
    (lambda s: s["world"].update(shape=3), "world: "),
    (lambda s: s["world"]["nuisance"].update(glare=1), "world.nuisance: "),
    (lambda s: s["train"].pop("per_identity"), "train: missing a required argument: 'per_identity'"),
    (lambda s: s["train"].update(progress=False), "train: 'progress' is no setting"),
    (lambda s: s["protocols"].update(ytf=["write_ytf", {}]), "protocols.ytf: 'write_ytf' is no protocol writer"),
    (lambda s: s["protocols"].update(ytf="write_ytf_like"), "protocols.ytf: expected [writer name, keyword"),
    (lambda s: s.pop("train"), "train: expected a mapping"),
])
def test_malformed_settings_name_the_key(tmp_path, change, message):
    settings = _settings()
    change(settings)
    with pytest.raises(ValueError) as error:
        check_settings(settings)
    assert str(error.value).startswith(message)
    with pytest.raises(ValueError):
        render_data(tmp_path / "data", settings, progress=False)
    assert not (tmp_path / "data").exists()


def test_a_failed_rendering_leaves_neither_the_folder_nor_a_partial_one(tmp_path):
    settings = _settings()
    settings["protocols"]["lfw"][1]["folds"] = 1   # the writer refuses it after the training set is written
    with pytest.raises(ValueError, match="folds"):
        render_data(tmp_path / "data", settings, progress=False)
    assert list(tmp_path.iterdir()) == []
