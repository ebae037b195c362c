"""The ``fanface`` spec (FAN-Face, Tab. 1): its rows, stage, world and claim as issue 15 words them, the
models its rows' recipes build, and the spec run end to end on a shrunk world (the FAN stage and every
row trained for a step, the stage's NME on held-out faces reaching results.json and results.md), so
that it cannot break silently."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest

from pyfacex.backbones.fan import FAN
from pyfacex.models.fanface import FANFace, parse_variant
from pyfacex.reproduce import run_spec
from pyfacex.reproduce.results import stage_evaluations
from pyfacex.reproduce.spec import STAGE_TOKEN, TRAIN_TOKEN, merge_recipes, stage_references
from pyfacex.reproduce.specs import get_spec
from pyfacex.reproduce.specs.fanface import CFP_FP, FAN_SIZE, IMAGE_SIZE, LFW, SPEC
from pyfacex.train.checkpoint import build_model, load_model
from pyfacex.train.config import config_from_dict

ROWS = ["ArcFace", "H2", "H2_1-1_BL_h2l-2", "H2_1-1_AL_h2l-2", "H2_1-1_SL_h2l-2", "H2_1-M_BL_h2l-2"]
TAB_1 = {"H2": "H2", "H2_1-1_BL_h2l-2": "H2,1-1,BL,h2l-2", "H2_1-1_AL_h2l-2": "H2,1-1,AL,h2l-2",
         "H2_1-1_SL_h2l-2": "H2,1-1,SL,h2l-2", "H2_1-M_BL_h2l-2": "H2,1M,BL,h2l-2"}
"""Each FAN-Face row and the Tab. 1 variant it is (AS1, AS2, AS3 twice, AS4), in Tab. 1's order."""


def config(variant: str, quick: bool = False):
    return config_from_dict(SPEC.cell_recipe(variant, quick))


def stage_config(quick: bool = False):
    return config_from_dict(SPEC.stage_recipe(SPEC.stages[0], quick))


def test_rows_metrics_and_claim_are_tab_1_on_profile_pairs():
    assert get_spec("fanface") is SPEC and SPEC.seeds >= 3 and SPEC.quick_seeds == 1
    assert [v.name for v in SPEC.variants] == ROWS
    assert [(m.name, m.evaluation, m.key, m.higher_is_better) for m in SPEC.metrics] == [
        (CFP_FP, "cfp-fp", "accuracy", True), (LFW, "lfw", "accuracy", True)]
    assert {e.name: (e.protocol, SPEC.world.protocols[e.protocol].writer) for e in SPEC.evaluations} == {
        "cfp-fp": ("cfp-fp", "write_cfp_fp_like"), "lfw": ("lfw", "write_lfw_like")}
    # FAN-Face beats the ArcFace baseline on frontal-to-profile pairs: the paper's best variant (Sec. 6)
    assert [(c.variant, c.baseline, c.metric, c.direction) for c in SPEC.claims] == [
        ("H2_1-1_BL_h2l-2", "ArcFace", CFP_FP, ">"), ("H2_1-1_BL_h2l-2", "ArcFace", LFW, ">")]
    assert all(c.metric in {m.name for m in SPEC.metrics} for c in SPEC.claims)
    # paper numbers only where the paper has that column: Tab. 6's LFW (ResNet-34, CASIA)
    assert SPEC.variant("ArcFace").paper == {LFW: 99.40} and SPEC.variant("H2_1-1_BL_h2l-2").paper == {LFW: 99.52}
    assert all(set(v.paper) <= {m.name for m in SPEC.metrics} for v in SPEC.variants)
    assert all(v.note for v in SPEC.variants)


def test_every_row_builds_its_tab_1_model_on_the_baselines_network():
    baseline = config("ArcFace")
    assert (baseline.trainer, baseline.model.name, baseline.head.kind) == ("classification", "iresnet34", "arcface")
    plain = build_model(baseline.model.name, baseline.model.kwargs)
    points = {}
    for row, variant in TAB_1.items():
        c = config(row)
        assert c.trainer == "fanface" and c.head.kind == "arcface"
        kwargs = dict(c.model.kwargs)
        assert kwargs.pop("fan_weights") == f"{STAGE_TOKEN}fan"
        assert kwargs["frn_kwargs"] == baseline.model.kwargs          # the same FRN as the baseline
        assert kwargs["fan_size"] == FAN_SIZE
        fan = FAN(**stage_config().model.kwargs)                      # the stage's architecture, random weights
        model = build_model(c.model.name, {**kwargs, "fan": fan})
        assert isinstance(model, FANFace) and model.config == parse_variant(variant)
        assert model.frn.input_size == (IMAGE_SIZE, IMAGE_SIZE) and model.frn.in_channels == 3 + 51
        # the FRN is the baseline's network: every parameter but the stem's (51 heatmap channels more)
        shapes = {k: v.shape for k, v in model.frn.state_dict().items() if k != "conv1.weight"}
        assert shapes == {k: v.shape for k, v in plain.state_dict().items() if k != "conv1.weight"}
        size = sum(p.numel() for p in plain.parameters())
        extra = sum(p.numel() for p in model.parameters() if p.requires_grad) - size
        assert 0 < extra < 0.05 * size   # Sec. 3.5: a small addition
        points[row] = 0 if model.integration is None else sum(len(s.points) for s in model.integration)
        for training in (False, True):                                # the same steps and optimiser as the baseline
            row_config, base = config(row, training), config("ArcFace", training)
            assert (row_config.epochs, row_config.optim, row_config.data.batch_size, row_config.schedule) == (
                base.epochs, base.optim, base.data.batch_size, base.schedule)
    stages = len(baseline.model.kwargs["layers"])
    assert points["H2"] == 0 and points["H2_1-1_BL_h2l-2"] == stages
    # 1-M integrates at every block of a stage: it differs from 1-1 only if a stage has several blocks
    assert points["H2_1-M_BL_h2l-2"] == sum(baseline.model.kwargs["layers"]) > stages


def test_the_fan_stage_is_trained_on_the_rendered_faces_at_the_side_fan_face_shows_it():
    (stage,) = SPEC.stages
    full, quick = stage_config(), stage_config(quick=True)
    assert stage.name == "fan" and full.trainer == "landmarks" and full.model.name == "fan"
    assert full.model.kwargs["num_stacks"] == 2                        # Sec. 3.1: 2 stacks, "H2" = the 2nd
    assert full.data.train == TRAIN_TOKEN                              # the world's faces, in the FRN's framing
    depth = full.model.kwargs.get("depth", 4)
    assert full.data.image_size == FAN_SIZE and FAN_SIZE % (4 * 2 ** depth) == 0 and FAN_SIZE >= IMAGE_SIZE
    assert "flip" in full.data.augment
    assert quick.epochs < full.epochs and not stage_references(SPEC.stage_recipe(stage, False))
    for row in TAB_1:
        assert stage_references(SPEC.cell_recipe(row, False)) == {"fan"}
    assert not stage_references(SPEC.cell_recipe("ArcFace", False))
    # quick mode is shorter for every row too
    assert all(config(row, True).epochs < config(row).epochs for row in ROWS)


def test_world_has_look_alike_cohorts_and_profiles_in_training():
    world = SPEC.world
    assert world.options["cohort_size"] > 1 and world.options["local_variety"] > 1
    assert world.nuisance["yaw"] * world.difficulty >= 90       # training yaws reach the CFP-FP profiles (60-90)
    cfp = world.protocols["cfp-fp"].kwargs
    assert cfp["identities_per_fold"] * cfp["folds"] >= 300 and cfp["profile_per_identity"] >= 1
    assert len(SPEC.pilot_worlds) in (2, 3)
    for candidate in SPEC.pilot_worlds:
        pilot = SPEC.pilot_spec(candidate)
        assert [v.name for v in pilot.variants] == ["ArcFace"] and pilot.stages == ()   # the baseline alone
        assert pilot.world.nuisance["yaw"] * pilot.world.difficulty >= 90
    assert SPEC.floors and SPEC.floor_network["layers"] == config("ArcFace").model.kwargs["layers"]
    assert "Scaled down" in SPEC.description


def test_stage_evaluations_summarise_the_final_evaluation_over_seeds():
    stages = {"fan": {"0": {"train": {"loss": 1.0, "nme": 0.9, "eval/nme": 0.1, "eval/nme_visible": 0.08}},
                      "1": {"train": {"loss": 2.0, "eval/nme": 0.2, "eval/nme_visible": None}}},
              "extractor": {"0": {"train": {"loss": 1.0}}}}
    summary = stage_evaluations(stages)
    assert set(summary) == {"fan"} and set(summary["fan"]) == {"nme", "nme_visible"}
    nme = summary["fan"]["nme"]
    assert nme["values"] == {"0": 0.1, "1": 0.2} and nme["n"] == 2 and nme["mean"] == pytest.approx(0.15)
    assert nme["half_width"] == pytest.approx(12.706 * 0.0707107 / math.sqrt(2), rel=1e-3)
    assert summary["fan"]["nme_visible"]["n"] == 1 and summary["fan"]["nme_visible"]["half_width"] is None


def _shrunk(variant, size: int):
    """A row's recipe at ``size`` pixels (model kwargs are replaced whole, so they are rebuilt)."""
    recipe = copy.deepcopy(dict(variant.recipe))
    kwargs = recipe["model"]["kwargs"]
    if recipe["trainer"] == "fanface":
        kwargs.update(frn_kwargs={**kwargs["frn_kwargs"], "input_size": size}, fan_size=size)
    else:
        kwargs["input_size"] = size
    return dataclasses.replace(variant, recipe=recipe)


def test_the_spec_runs_end_to_end_on_a_shrunk_world(tmp_path, trainings, tiny_protocols):
    size = 32
    world = SPEC.world.replaced({"identities": 4, "per_identity": 4, "size": size})
    world = dataclasses.replace(world, protocols=tiny_protocols(world.protocols))
    (stage,) = SPEC.stages
    tiny_fan = {"num_stacks": 2, "width": 8, "depth": 2}   # takes multiples of 16
    stage = dataclasses.replace(stage, quick={**stage.quick, "max_steps": 2, "model": {"kwargs": tiny_fan},
                                              "data": {"image_size": size, "batch_size": 4}})
    spec = dataclasses.replace(
        SPEC, world=world, stages=(stage,), variants=tuple(_shrunk(v, size) for v in SPEC.variants),
        recipe=merge_recipes(SPEC.recipe, {"data": {"image_size": size}}),
        quick={**SPEC.quick, "max_steps": 1, "data": {"batch_size": 8}},
        floor_network={**SPEC.floor_network, "widths": [8, 8, 8, 8]})
    out = tmp_path / "out"
    results = run_spec(spec, out, quick=True, cache=tmp_path / "cache", progress=False, log=lambda line: None)

    landmarks, *rows = trainings
    assert [t.config.trainer for t in trainings] == ["landmarks", "classification"] + ["fanface"] * 5
    stage_file = str(out / "stages" / "fan" / "seed0" / "model.pt")
    assert all(t.config.model.kwargs["fan_weights"] == stage_file for t in rows[1:])
    # the FAN learnt from the rendered training faces and is scored on held-out faces of the same world:
    # the same framing and look-alike cohorts, other identities
    (held_out,) = (out / "stages" / "fan" / "seed0" / "landmark_data").iterdir()
    train_info = json.loads((Path(landmarks.config.data.train) / "info.json").read_text())
    test_info = json.loads((held_out / "info.json").read_text())
    assert test_info["split"] == "test" and train_info["split"] == "train"
    for key in ("framing", "size", "cohort_size", "cohort_jitter", "local_variety", "nuisance"):
        assert test_info[key] == train_info[key], key
    # its NME on those faces reaches stage.json, results.json and results.md
    record = json.loads((out / "stages" / "fan" / "seed0" / "stage.json").read_text())
    assert record["train"]["eval/nme"] > 0 and "eval/nme_visible" in record["train"]
    nme = results["stage_evaluations"]["fan"]["nme"]
    assert nme["n"] == 1 and nme["mean"] == pytest.approx(record["train"]["eval/nme"])
    assert json.loads((out / "results.json").read_text())["stage_evaluations"]["fan"]["nme"]["values"] == nme["values"]
    markdown = (out / "results.md").read_text()
    assert "## Stages" in markdown and "nme" in markdown.split("## Stages")[1]
    # every row trained the model its name says and was evaluated on both protocols
    for row in ROWS:
        cell = json.loads((out / "cells" / row / "seed0.json").read_text())
        assert {name for name, e in cell["evaluations"].items() if e["metrics"]["accuracy"] is not None} == {
            "cfp-fp", "lfw"}
        model, _ = load_model(out / "train" / row / "seed0" / "model.pt")
        assert (str(model.config) == TAB_1[row]) if row in TAB_1 else not isinstance(model, FANFace)
    assert set(results["floors"]) and results["claims"][0]["verdict"] != "not run"
