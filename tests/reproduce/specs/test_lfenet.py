"""The ``lfenet`` spec (LFENet, Tab. III): its rows, metrics and claims as issue 15 words them, and the
spec run end to end on a shrunk world (every row and the stage trained for a step or two, every metric
evaluated), so that it cannot break silently."""
from __future__ import annotations

import dataclasses
import json

from pyfacex.eval.report import tar_column
from pyfacex.reproduce import Protocol, run_spec
from pyfacex.reproduce.spec import merge_recipes
from pyfacex.reproduce.specs.lfenet import SPEC
from pyfacex.train.checkpoint import load_model
from pyfacex.train.config import config_from_dict

ROWS = ["baseline", "softmax_a", "scaled_dot", "softmax_b", "softmax_b_t1"]
COLUMNS = [tar_column(far, "interpolated") for far in (1e-3, 1e-2, 1e-1)]


def config(variant: str, quick: bool = False):
    return config_from_dict(SPEC.cell_recipe(variant, quick))


def test_rows_metrics_and_claims_are_tab_iii():
    assert SPEC.name == "lfenet" and SPEC.seeds == 3 and SPEC.quick_seeds == 1
    assert [v.name for v in SPEC.variants] == ROWS
    assert [m.name for m in SPEC.metrics] == COLUMNS
    assert [m.key for m in SPEC.metrics] == COLUMNS
    assert {m.evaluation for m in SPEC.metrics} == {"ijba"}
    assert SPEC.variant("softmax_b").paper == dict(zip(COLUMNS, (96.83, 98.93, 99.57)))
    assert SPEC.variant("baseline").paper == dict(zip(COLUMNS, (93.62, 95.32, 97.45)))
    assert SPEC.variant("softmax_b_t1").paper[COLUMNS[0]] == 90.31
    # SoftmaxB beats the baseline; T_tr = 3 beats T_tr = 1
    assert {(c.variant, c.baseline, c.direction) for c in SPEC.claims} == {
        ("softmax_b", "baseline", ">"), ("softmax_b", "softmax_b_t1", ">")}
    assert {c.metric for c in SPEC.claims} == set(COLUMNS[:2])
    assert SPEC.pilot_worlds and SPEC.pilot_spec("provisional").variants[0].name == "baseline"


def test_rows_differ_only_in_the_lit():
    baseline = config("baseline")
    assert baseline.trainer == "classification" and baseline.model.name == "irse50"   # no LIT, no set function
    rows = {name: config(name) for name in ROWS[1:]}
    assert {name: (c.model.kwargs["relation"], c.data.set_size) for name, c in rows.items()} == {
        "softmax_a": ("softmax_a", 3), "scaled_dot": ("scaled_dot", 3), "softmax_b": ("softmax_b", 3),
        "softmax_b_t1": ("softmax_b", 1)}
    for c in rows.values():
        assert c.trainer == "sets" and c.model.name == "lfenet_irse50" and c.model.weights_prefix == "backbone"
        assert c.model.kwargs["backbone_kwargs"] == baseline.model.kwargs    # the same network under the LIT
        assert c.data.sets_per_batch * c.data.set_size == baseline.data.batch_size   # the same images per step
        assert c.optim.lr_scales == {"lit": 20.0, "head": 20.0}
        assert (c.epochs, c.optim.lr, c.schedule.kind) == (baseline.epochs, baseline.optim.lr, baseline.schedule.kind)
    for c in [baseline, *rows.values()]:
        assert c.model.weights == "$stage:backbone"
    assert config_from_dict(merge_recipes(SPEC.stages[0].recipe)).model.kwargs == baseline.model.kwargs


def test_templates_spread_pose_and_occlusion_and_hold_enough_impostors():
    (evaluation,) = SPEC.evaluations
    assert evaluation.set_function == "auto"   # LFENet's own set function; the baseline's mean
    protocol = SPEC.world.protocols[evaluation.protocol]
    kwargs = protocol.kwargs
    assert protocol.writer == "write_ijba_like"
    assert kwargs["yaw_spread"] > 0 and 0 < kwargs["occlusion_share"] < 1 and kwargs["face_box"] == "image"
    assert kwargs["stills"][0] >= 2   # a template's images can complement each other
    # TAR@FAR=1e-3 per split needs >= 1000 impostor pairs there: each unordered pair is drawn at most twice
    drawn = kwargs["test_subjects"] * kwargs["templates_per_subject"] * kwargs["impostors_per_template"]
    assert drawn // 2 >= 1000
    assert SPEC.world.per_identity >= 3 * 3   # several sets of T_tr = 3 per identity
    assert SPEC.world.options["cohort_size"] > 1



def test_the_spec_runs_end_to_end_on_a_shrunk_world(tmp_path, trainings):
    ijba = dict(SPEC.world.protocols["ijba"].kwargs, subjects=4, splits=2, test_subjects=3, templates_per_subject=2,
                stills=[2, 3], impostors_per_template=2)
    world = SPEC.world.replaced({"identities": 16, "per_identity": 6, "size": 32,
                                 "protocols": {"ijba": Protocol("write_ijba_like", ijba)}})
    stage = dataclasses.replace(SPEC.stages[0], quick={"epochs": 1, "max_steps": 1})
    spec = dataclasses.replace(SPEC, world=world, stages=(stage,), quick={**SPEC.quick, "max_steps": 2})
    results = run_spec(spec, tmp_path / "out", quick=True, cache=tmp_path / "cache", progress=False,
                       log=lambda line: None)
    configs = [trainer.config for trainer in trainings]

    assert [c.trainer for c in configs] == ["classification"] * 2 + ["sets"] * 4   # the stage, then the rows
    stage_file = str(tmp_path / "out" / "stages" / "backbone" / "seed0" / "model.pt")
    assert all(c.model.weights == stage_file for c in configs[1:])
    for variant in ROWS:
        cell = json.loads((tmp_path / "out" / "cells" / variant / "seed0.json").read_text())
        evaluation = cell["evaluations"]["ijba"]
        assert evaluation["set_function"] == ("mean" if variant == "baseline" else "model")
        assert {m.key for m in SPEC.metrics} <= set(evaluation["metrics"])
        assert set(results["variants"][variant]) >= set(COLUMNS)
    assert len(results["claims"]) == len(SPEC.claims)
    # the LIT rows trained their LIT (it starts as the identity, V = 0)
    model, _ = load_model(tmp_path / "out" / "train" / "softmax_b" / "seed0" / "model.pt")
    assert model.lit.relation == "softmax_b" and model.lit.value.weight.abs().sum() > 0
