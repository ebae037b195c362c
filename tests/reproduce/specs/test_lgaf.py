"""The ``lgaf`` spec (LGAF, Tab. 1 and 6): its rows, metrics and claims as issue 15 words them, a world of
mixed quality on look-alike cohorts, and the spec run end to end on a shrunk world (every row trained for
two steps, every metric evaluated), so that it cannot break silently."""
from __future__ import annotations

import dataclasses
import json

from pyfacex.reproduce import run_spec
from pyfacex.reproduce.specs.lgaf import SPEC
from pyfacex.train.config import config_from_dict

ROWS = ["gfe", "mhms", "add", "lgaf"]
COLUMNS = ["TinyFace rank-1", "LFW@16px", "LFW", "CFP-FP"]


def config(variant: str, quick: bool = False):
    return config_from_dict(SPEC.cell_recipe(variant, quick))


def test_rows_metrics_and_paper_numbers():
    assert SPEC.name == "lgaf" and SPEC.seeds == 3 and SPEC.quick_seeds == 1
    assert [v.name for v in SPEC.variants] == ROWS
    assert [m.name for m in SPEC.metrics] == COLUMNS
    assert {e.name: e.options for e in SPEC.evaluations} == {"tinyface": "", "lfw@16px": "@16px", "lfw": "",
                                                             "cfp-fp": ""}
    # Tab. 1b (TinyFace rank-1) and Tab. 1a's CFP-FP column, Methods II, I, III and LGAF
    assert [SPEC.variant(v).paper["TinyFace rank-1"] for v in ROWS] == [62.07, 67.84, 68.03, 68.35]
    assert [SPEC.variant(v).paper["CFP-FP"] for v in ROWS] == [98.27, 98.64, 98.59, 98.77]


def test_claims_are_the_issues():
    claims = {(c.variant, c.baseline, c.metric): (c.direction, c.margin) for c in SPEC.claims}
    assert len(claims) == len(SPEC.claims) == 7
    for metric in ("TinyFace rank-1", "LFW@16px"):   # LGAF beats every other row
        for other in ("gfe", "mhms", "add"):
            assert claims[("lgaf", other, metric)] == (">", 0.0)
    assert claims[("lgaf", "gfe", "LFW")] == (">=", 1.0)   # not worse on clean faces


def test_rows_differ_only_in_the_branches_and_the_fusion():
    rows = {name: config(name) for name in ROWS}
    assert rows["gfe"].model.kwargs["branches"] == "gfe_only"
    assert rows["mhms"].model.kwargs["branches"] == "mhms_only"
    assert rows["add"].model.kwargs["quality"] == "none"
    assert set(rows["lgaf"].model.kwargs) == {"backbone_kwargs"}   # the model's defaults: GFE + MHMS + LGF
    for row in rows.values():
        assert row.model.name == "lgaf_r50" and row.head.kind == "arcface"
        assert row.model.kwargs["backbone_kwargs"] == rows["lgaf"].model.kwargs["backbone_kwargs"]
        assert (row.data, row.optim, row.schedule, row.epochs) == \
            (rows["lgaf"].data, rows["lgaf"].optim, rows["lgaf"].schedule, rows["lgaf"].epochs)
    assert config("lgaf", quick=True).epochs < rows["lgaf"].epochs


def test_world_mixes_quality_on_cohorts_and_has_pilots():
    assert SPEC.world.options["cohort_size"] > 1 and SPEC.world.options["local_variety"] > 1
    # more blur, occluders and resolution loss than the default world (all 1.0)
    assert all(SPEC.world.nuisance[k] > 0.9 for k in ("blur", "occlusion", "low_resolution"))
    assert len(SPEC.pilot_worlds) >= 2
    for candidate in SPEC.pilot_worlds:
        pilot = SPEC.pilot_spec(candidate)
        assert [v.name for v in pilot.variants] == ["gfe"] and not pilot.claims


def test_the_spec_runs_end_to_end_on_a_shrunk_world(tmp_path, trainings, tiny_protocols):
    world = SPEC.world.replaced({"identities": 8, "per_identity": 4, "size": 48,
                                 "protocols": tiny_protocols(SPEC.world.protocols)})
    quick = {**SPEC.quick, "max_steps": 2, "data": {"batch_size": 8, "num_workers": 0}}
    spec = dataclasses.replace(SPEC, world=world, quick=quick)
    results = run_spec(spec, tmp_path / "out", quick=True, cache=tmp_path / "cache", progress=False,
                       log=lambda line: None)

    models = [t.modules["model"] for t in trainings]
    assert [(m.branches, m.lgf and m.lgf.quality) for m in models] == \
        [("gfe_only", None), ("mhms_only", None), ("both", "none"), ("both", "energy")]
    for variant in ROWS:
        cell = json.loads((tmp_path / "out" / "cells" / variant / "seed0.json").read_text())
        assert cell["quick"] and set(cell["evaluations"]) == {e.name for e in SPEC.evaluations}
        for metric in COLUMNS:
            assert results["variants"][variant][metric]["n"] == 1
    assert set(results["floors"]) and all(results["floors"][row]["CFP-FP"]["n"] == 1 for row in results["floors"])
    assert [c["metric"] for c in results["claims"]] == [c.metric for c in SPEC.claims]
