"""The ``qaface`` spec (QAFace, Tab. 1-4): its rows, metrics and claims as issue 15 words them, the
unrecognisable training images in its world, and the spec run end to end on a shrunk world (every row
trained for two steps with the memory injected, every metric evaluated), so that it cannot break silently."""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from pyfacex.data.synthetic.rendered_data import settings_key
from pyfacex.reproduce import run_spec
from pyfacex.reproduce.specs.qaface import SPEC
from pyfacex.train.config import config_from_dict

ROWS = ["ArcFace", "VPL", "QAFace", "QAFace-f1"]
LOW_QUALITY = ["LFW@16px", "LFW@8px", "TinyFace rank-1"]
COLUMNS = [*LOW_QUALITY, "LFW"]


def config(variant: str, quick: bool = False):
    return config_from_dict(SPEC.cell_recipe(variant, quick))


def test_rows_metrics_and_paper_numbers():
    assert SPEC.name == "qaface" and SPEC.seeds == 3 and SPEC.quick_seeds == 1
    assert [v.name for v in SPEC.variants] == ROWS
    assert [m.name for m in SPEC.metrics] == COLUMNS
    assert {(e.name, e.options) for e in SPEC.evaluations} == {
        ("lfw@16px", "@16px"), ("lfw@8px", "@8px"), ("tinyface", ""), ("lfw", "")}
    assert [SPEC.world.protocols[e.protocol].writer for e in SPEC.evaluations] == [
        "write_lfw_like", "write_lfw_like", "write_tinyface_like", "write_lfw_like"]
    # Tab. 1: LFW at 16x16, 8x8 and original
    assert SPEC.variant("ArcFace").paper == {"LFW@16px": 96.60, "LFW@8px": 71.86, "LFW": 99.83}
    assert SPEC.variant("VPL").paper == {"LFW@16px": 97.30, "LFW@8px": 71.96, "LFW": 99.83}
    assert SPEC.variant("QAFace").paper == {"LFW@16px": 98.26, "LFW@8px": 72.76, "LFW": 99.85}
    assert SPEC.variant("QAFace-f1").paper == {}


def test_claims_are_the_issues():
    claims = {(c.variant, c.baseline, c.metric): (c.direction, c.margin) for c in SPEC.claims}
    assert len(claims) == len(SPEC.claims) == 10
    for metric in LOW_QUALITY:   # on low quality, QAFace >= VPL > ArcFace
        assert claims[("QAFace", "ArcFace", metric)] == (">", 0.0)
        assert claims[("VPL", "ArcFace", metric)] == (">", 0.0)
    assert claims[("QAFace", "VPL", "LFW@16px")] == (">", 0.0)
    assert claims[("QAFace", "VPL", "LFW@8px")] == (">=", 1.0)
    assert claims[("QAFace", "VPL", "TinyFace rank-1")] == (">=", 1.0)
    assert claims[("QAFace", "ArcFace", "LFW")] == (">=", 1.0)   # clean data: no loss
    assert all(c.note for c in SPEC.claims)


def test_rows_are_recipes_of_one_network_and_schedule():
    arcface, vpl, qaface, plain = (config(name) for name in ROWS)
    assert arcface.trainer == "classification" and arcface.head.kind == "arcface"
    assert (vpl.trainer, vpl.model.name, vpl.qaface.mode, vpl.qaface.momentum) == ("qaface", "vpl_r100", "vpl", None)
    assert (qaface.model.name, qaface.qaface.mode, qaface.qaface.tau) == ("qaface_r50", "qaface", 2.0)
    assert qaface.qaface.quality_weight and not plain.qaface.quality_weight
    assert dataclasses.replace(plain.qaface, quality_weight=True) == qaface.qaface   # f ≡ 1 is the only change
    backbone = {k: v for k, v in arcface.model.kwargs.items() if k != "num_features"}
    for row in (vpl, qaface, plain):
        assert {k: v for k, v in row.model.kwargs.items() if k != "embedding_size"} == backbone
        assert row.model.kwargs["embedding_size"] == arcface.model.kwargs["num_features"]
        assert row.head == arcface.head and row.data == arcface.data and row.optim == arcface.optim
        assert (row.epochs, row.schedule) == (arcface.epochs, arcface.schedule)
    assert arcface.data.augment == ["flip", "crop_down_sample"]   # Tab. 5 for every row
    assert arcface.head.params["grad"] == "straight_through"   # docs/reproductions/margin-gradient.md
    assert config("QAFace", quick=True).epochs < qaface.epochs


def test_world_has_cohorts_unrecognisable_images_and_pilots():
    assert SPEC.world.options["cohort_size"] > 1
    assert SPEC.world.train_options == {"unrecognisable": 0.1}
    assert SPEC.world.data_settings()["train"]["unrecognisable"] == 0.1
    assert len(SPEC.pilot_worlds) >= 2
    for candidate in SPEC.pilot_worlds:
        pilot = SPEC.pilot_spec(candidate)
        assert [v.name for v in pilot.variants] == ["ArcFace"] and not pilot.claims
        assert pilot.world.train_options == SPEC.world.train_options


def test_the_spec_runs_end_to_end_on_a_shrunk_world(tmp_path, trainings, tiny_protocols):
    world = SPEC.world.replaced({"identities": 8, "per_identity": 4, "size": 48,
                                 "train_options": {"unrecognisable": 0.25},
                                 "protocols": tiny_protocols(SPEC.world.protocols)})
    # two steps of 8 faces, the memory written and injected from the first step
    quick = {**SPEC.quick, "max_steps": 2, "data": {"batch_size": 8}, "qaface": {"start_epoch": 0.0}}
    spec = dataclasses.replace(SPEC, world=world, quick=quick)
    results = run_spec(spec, tmp_path / "out", quick=True, cache=tmp_path / "cache", progress=False,
                       log=lambda line: None)

    # the rendered training set holds its unrecognisable images (8 of 32)
    train = tmp_path / "cache" / settings_key(world.data_settings()) / "train"
    assert int((np.load(train / "ground_truth.npz")["unrecognisable"] > 0).sum()) == 8
    assert json.loads((train / "info.json").read_text())["unrecognisable"]["count"] == 8

    assert [t.config.trainer for t in trainings] == ["classification", "qaface", "qaface", "qaface"]
    heads = [t.modules["model"].head for t in trainings[1:]]
    assert [(h.mode, h.quality_weight) for h in heads] == [("vpl", True), ("qaface", True), ("qaface", False)]
    for variant in ROWS:
        cell = json.loads((tmp_path / "out" / "cells" / variant / "seed0.json").read_text())
        assert cell["quick"] and set(cell["evaluations"]) == {e.name for e in SPEC.evaluations}
        if variant != "ArcFace":
            assert cell["train"]["injected"] > 0   # the second step's centres carried memory
        assert ("quality" in cell["train"]) == (variant == "QAFace")   # f(ẑ) is QAFace's alone
        for metric in COLUMNS:
            assert results["variants"][variant][metric]["n"] == 1
    assert set(results["floors"]) and all(results["floors"][row]["LFW@8px"]["n"] == 1 for row in results["floors"])
    assert [c["metric"] for c in results["claims"]] == [c.metric for c in SPEC.claims]
    assert all(c["verdict"] for c in results["claims"])
