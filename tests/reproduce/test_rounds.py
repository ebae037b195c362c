"""Documented rounds (pyfacex.reproduce.rounds): a spec with rows replaced by one-setting changes."""
import json

import pytest

from pyfacex.data.synthetic.rendered_data import settings_key
from pyfacex.reproduce import SpecError, run_spec
from pyfacex.reproduce import runner as runner_module
from pyfacex.reproduce.rounds import cell_scores, evaluation_scores, round_main, round_spec
from pyfacex.reproduce.specs.micro import SPEC
from pyfacex.train.checkpoint import load_model

CHANGE = {"optim": {"lr": 0.05}}


def test_round_spec_keeps_baselines_changes_rows_and_renames_claims():
    spec = round_spec(SPEC, "_micro-lr", CHANGE, {"finetuned_lr": "finetuned"}, ("arcface",), "lr 0.05 (round)", "why")
    assert [v.name for v in spec.variants] == ["arcface", "finetuned_lr"]
    arcface, changed = spec.variants
    assert arcface == SPEC.variants[0]
    # the change merges into the row's recipe (its stage weights and head stay), and its note says so
    assert changed.recipe == {**SPEC.variants[1].recipe, "optim": {"lr": 0.05}}
    assert changed.note.endswith("; lr 0.05 (round)") and changed.paper == SPEC.variants[1].paper
    assert [(c.variant, c.baseline, c.metric, c.direction) for c in spec.claims] == [
        ("finetuned_lr", "arcface", c.metric, c.direction) for c in SPEC.claims]
    assert (spec.name, spec.description, spec.world, spec.stages) == ("_micro-lr", "why", SPEC.world, SPEC.stages)


def test_round_spec_drops_claims_on_rows_it_lacks_and_names_unknown_rows():
    spec = round_spec(SPEC, "_micro-lr", CHANGE, {"arcface_lr": "arcface"}, (), "n", "d")
    assert [v.name for v in spec.variants] == ["arcface_lr"] and spec.claims == ()
    with pytest.raises(SpecError, match=r"rows: \['nope'\] are not rows of '_micro'"):
        round_spec(SPEC, "r", CHANGE, {"x": "nope"}, ("arcface",), "n", "d")
    with pytest.raises(SpecError, match=r"keep: \['gone'\]"):
        round_spec(SPEC, "r", CHANGE, {"x": "arcface"}, ("gone",), "n", "d")


def test_round_main_reuses_the_run_and_trains_only_the_changed_row(tmp_path, monkeypatch):
    run, out, cache = tmp_path / "run", tmp_path / "round", tmp_path / "cache"
    run_spec(SPEC, run, cache=cache, progress=False, log=lambda line: None)
    trained = []
    create = runner_module.create_trainer
    monkeypatch.setattr(runner_module, "create_trainer", lambda config: trained.append(config) or create(config))

    doc = "Title.\n\nThe round's\ndescription."
    after = []
    results = round_main(doc, "_micro", "_micro-lr", CHANGE, {"finetuned_lr": "finetuned"}, ("arcface",), "lr 0.05",
                         ["--out", str(out), "--cache", str(cache), "--run", str(run)],
                         after=lambda spec, folder, data: after.append((spec.name, folder, data, len(trained))))
    # the round's own readings come after its training, on its folder and the world it rendered
    assert after == [("_micro-lr", out, cache / settings_key(SPEC.world.data_settings()), 2)]
    # the stage and the kept row come from the run; the changed row trains once per seed, at its rate
    assert [c.optim.lr for c in trained] == [0.05, 0.05]
    assert sorted(results["variants"]) == ["arcface", "finetuned_lr"]
    kept = json.loads((run / "cells" / "arcface" / "seed1.json").read_text())
    assert json.loads((out / "cells" / "arcface" / "seed1.json").read_text()) == kept
    assert [c["variant"] for c in results["claims"]] == ["finetuned_lr"] * len(SPEC.claims)
    assert results["spec"] == "_micro-lr"
    assert "The round's description." in (out / "results.md").read_text(encoding="utf-8")


def test_evaluation_scores_are_the_cells_own_metrics(tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    run_spec(SPEC, out, cache=cache, seeds=1, progress=False, log=lambda line: None)
    cell = json.loads((out / "cells" / "arcface" / "seed0.json").read_text())
    model, info = load_model(out / "train" / "arcface" / "seed0" / "model.pt")
    scores = evaluation_scores(SPEC, model.eval(), cache / settings_key(SPEC.world.data_settings()), info["image_size"])
    evaluations = cell["evaluations"]
    assert scores == {name: 100.0 * result["metrics"][result["primary"]] for name, result in evaluations.items()}
    assert cell_scores(out, "arcface", 0) == scores
