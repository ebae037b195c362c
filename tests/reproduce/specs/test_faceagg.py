"""The ``faceagg`` spec (Face Aggregation Network, Tab. 1 and 4): its rows, metrics and claim as issue 15
words them, and the spec run end to end on a shrunk world (the extractor stage and every aggregator row
trained for a step, the average-pooling row evaluating the stage, every metric evaluated), so that it
cannot break silently."""
from __future__ import annotations

import dataclasses
import json

import pytest

from pyfacex.reproduce import Protocol, run_spec
from pyfacex.reproduce.spec import merge_recipes
from pyfacex.reproduce.specs.faceagg import BLUR, SPEC
from pyfacex.train.config import config_from_dict

ROWS = ["avg", "faceagg", "no_adv", "rec_avg"]
CLEAN, BLURRED, DROP = "YTF", f"YTF@blur{BLUR}", "YTF drop under blur"


def config(variant: str, quick: bool = False):
    return config_from_dict(SPEC.cell_recipe(variant, quick))


def test_rows_metrics_and_claim_are_tab_1_and_4():
    assert SPEC.name == "faceagg" and SPEC.seeds == 3 and SPEC.quick_seeds == 1
    assert [v.name for v in SPEC.variants] == ROWS
    assert [m.name for m in SPEC.metrics] == [CLEAN, BLURRED, DROP]
    clean, blurred, drop = SPEC.metrics
    assert (clean.evaluation, blurred.evaluation) == ("ytf", f"ytf@blur{BLUR}")
    assert (drop.evaluation, drop.minus, drop.key, drop.higher_is_better) == ("ytf", f"ytf@blur{BLUR}", "accuracy",
                                                                              False)
    assert SPEC.variant("avg").paper == {CLEAN: 96.34, BLURRED: 93.76, DROP: pytest.approx(96.34 - 93.76)}
    assert SPEC.variant("faceagg").paper == {CLEAN: 96.60, BLURRED: 95.82, DROP: pytest.approx(96.60 - 95.82)}
    assert SPEC.variant("no_adv").paper == {CLEAN: 96.44} and SPEC.variant("rec_avg").paper == {CLEAN: 96.44}
    (claim,) = SPEC.claims   # the aggregator degrades less than averaging under blur
    assert (claim.variant, claim.baseline, claim.metric, claim.direction) == ("faceagg", "avg", DROP, ">")
    assert SPEC.pilot_worlds and SPEC.pilot_spec("provisional").variants[0].name == "avg"
    assert [s.name for s in SPEC.pilot_spec("provisional").stages] == ["extractor"]


def test_avg_evaluates_the_extractor_and_the_aggregators_differ_only_in_their_losses():
    (stage,) = SPEC.stages
    extractor = config_from_dict(merge_recipes(stage.recipe))
    assert extractor.trainer == "classification" and extractor.head.kind == "arcface"
    assert SPEC.variant("avg").stage == "extractor" and not SPEC.variant("avg").recipe   # trains nothing
    rows = {name: config(name) for name in ROWS[1:]}
    for c in rows.values():
        assert c.trainer == "gan" and c.model.name == "faceagg_unet"
        assert c.model.kwargs["extractor"] == "$stage:extractor"
        assert c.data.image_size == extractor.data.image_size
        assert (c.data.set_size, c.data.sets_per_batch) == (10, 4)   # N = 10 (Sec. 4.1)
        assert "motion_blur" in c.data.augment
        assert (c.epochs, c.optim.lr, c.schedule.milestones) == (6, 2e-4, [3.0])   # × 0.25 after half (Sec. 4.1)
    losses = {name: ({k: v for k, v in c.model.kwargs.items() if k not in rows["faceagg"].model.kwargs},
                     c.gan.d_steps) for name, c in rows.items()}
    assert losses == {"faceagg": ({}, 1), "no_adv": ({"lambda_adv": 0.0}, 0),
                      "rec_avg": ({"reconstruction": "average"}, 1)}
    quick = config("faceagg", quick=True)
    assert quick.epochs < rows["faceagg"].epochs and quick.schedule.milestones == [quick.epochs / 2]


def test_videos_hold_ten_distinct_frames_per_set_and_tab_4_blurs_nine():
    (protocol,) = SPEC.world.protocols.values()
    assert protocol.writer == "write_ytf_like"
    assert protocol.kwargs["frames_per_video"][0] >= 10 * 4   # N·n_avg frames: no frame repeated in a set
    assert protocol.kwargs["pairs_per_split"] <= protocol.kwargs["identities_per_split"] * 3   # C(3, 2) per person
    assert [(e.options, e.set_function) for e in SPEC.evaluations] == [("", "auto"), (f"@blur{BLUR}", "auto")]
    assert SPEC.world.train_options["frames_per_video"] == config("faceagg").data.set_size
    assert SPEC.world.per_identity // SPEC.world.train_options["frames_per_video"] >= 2   # P from another video
    assert SPEC.world.options["cohort_size"] > 1
    assert protocol.kwargs["splits"] * protocol.kwargs["identities_per_split"] % SPEC.world.options["cohort_size"] == 0



def test_the_spec_runs_end_to_end_on_a_shrunk_world(tmp_path, trainings):
    ytf = dict(SPEC.world.protocols["ytf"].kwargs, splits=2, identities_per_split=2, videos_per_identity=2,
               pairs_per_split=1, frames_per_video=[2, 3])
    world = SPEC.world.replaced({"identities": 4, "per_identity": 4, "size": 32,
                                 "train_options": {"frames_per_video": 2},
                                 "protocols": {"ytf": Protocol("write_ytf_like", ytf)}})
    (stage,) = SPEC.stages
    small = {"data": {"image_size": 32, "batch_size": 8}, "max_steps": 1,
             "model": {"kwargs": {**stage.recipe["model"]["kwargs"], "input_size": 32}}}
    spec = dataclasses.replace(
        SPEC, world=world, stages=(dataclasses.replace(stage, quick={**stage.quick, **small}),),
        quick={**SPEC.quick, "max_steps": 1, "data": {"image_size": 32, "set_size": 2, "sets_per_batch": 2}})
    out = tmp_path / "out"
    results = run_spec(spec, out, quick=True, cache=tmp_path / "cache", progress=False, log=lambda line: None)
    configs = [trainer.config for trainer in trainings]

    assert [c.trainer for c in configs] == ["classification"] + ["gan"] * 3   # the stage, then the aggregators
    stage_file = str(out / "stages" / "extractor" / "seed0" / "model.pt")
    assert all(c.model.kwargs["extractor"] == stage_file for c in configs[1:])
    assert [(c.model.kwargs.get("lambda_adv"), c.model.kwargs.get("reconstruction"), c.gan.d_steps)
            for c in configs[1:]] == [(None, None, 1), (0.0, None, 0), (None, "average", 1)]
    assert not (out / "train" / "avg").exists()
    for variant in ROWS:
        cell = json.loads((out / "cells" / variant / "seed0.json").read_text())
        for evaluation in cell["evaluations"].values():
            assert evaluation["set_function"] == ("mean" if variant == "avg" else "model")
        values = results["variants"][variant]
        assert values[DROP]["mean"] == pytest.approx(values[CLEAN]["mean"] - values[BLURRED]["mean"])
    assert set(results["floors"]) and all(row[DROP]["n"] == 1 for row in results["floors"].values())
    (claim,) = results["claims"]
    assert claim["paper"]["difference"] == pytest.approx((96.34 - 93.76) - (96.60 - 95.82))
    assert len(claim["differences"]) == 1
