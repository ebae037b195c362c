"""Two spec features the Face Aggregation Network's experiment needs: a row that trains nothing and
evaluates a stage's model file (``Variant.stage``: the extractor's average pooling, Tab. 1/4's *avg*),
and a column that is the difference of one key between two evaluations (``Metric.minus``: the drop of
accuracy from clean to blurred videos, Tab. 1 vs Tab. 4)."""
import dataclasses
import json

import pytest

from pyfacex.reproduce import Metric, SpecError, Variant, get_spec, run_spec
from pyfacex.reproduce.results import metric_values

MICRO = get_spec("_micro")
STAGE_ROW = Variant("extractor_only", stage="extractor", paper={"LFW": 98.0})


@pytest.mark.parametrize("changes, message", [
    (dict(variants=(MICRO.variants[0], Variant("x", stage="fan"))),
     "variants[1].stage: 'fan' is not a stage; stages: extractor"),
    (dict(variants=(MICRO.variants[0], Variant("x", {"epochs": 0}, stage="extractor"))),
     "variants[1].recipe: the row evaluates stage 'extractor' and trains nothing: expected no recipe, got epochs"),
    (dict(metrics=(Metric("drop", "lfw", "accuracy", minus="cfp"),)), "metrics[0].minus: expected another evaluation"),
    (dict(metrics=(Metric("drop", "lfw", "accuracy", minus="lfw"),)), "metrics[0].minus: expected another evaluation"),
])
def test_a_malformed_stage_row_or_difference_names_the_field(changes, message):
    with pytest.raises(SpecError, match=r"^spec '_micro': ") as error:
        dataclasses.replace(MICRO, **changes)
    assert message in str(error.value)


def _cell(clean, degraded):
    return {"evaluations": {"lfw": {"metrics": {"accuracy": clean}}, "lfw@16px": {"metrics": {"accuracy": degraded}}}}


def test_a_difference_column_subtracts_the_second_evaluation():
    spec = dataclasses.replace(MICRO, metrics=(
        Metric("LFW", "lfw", "accuracy"),
        Metric("drop", "lfw", "accuracy", minus="lfw@16px", higher_is_better=False)), claims=(),
        variants=(Variant("a"),))
    values = metric_values(spec, {"a": {0: _cell(0.9, 0.75), 1: _cell(0.8, None)}})
    assert values["a"]["LFW"] == pytest.approx({0: 90.0, 1: 80.0})
    assert values["a"]["drop"] == pytest.approx({0: 15.0})   # undefined where either side is


def test_a_stage_row_evaluates_the_stage_and_trains_nothing(tmp_path):
    spec = dataclasses.replace(MICRO, variants=(STAGE_ROW, MICRO.variants[1]), claims=(), floors=False)
    out = tmp_path / "out"
    lines = []
    results = run_spec(spec, out, quick=True, cache=tmp_path / "cache", progress=False, log=lines.append)

    assert any("extractor_only, seed 0: evaluating stage extractor" in line for line in lines)
    assert not (out / "train" / "extractor_only").exists()
    cell = json.loads((out / "cells" / "extractor_only" / "seed0.json").read_text())
    assert cell["train"] == {} and set(cell["evaluations"]) == {"lfw", "lfw@16px"}
    assert results["variants"]["extractor_only"]["LFW"]["n"] == 1
    run_spec(spec, out, quick=True, cache=tmp_path / "cache", progress=False, log=lines.append)
    assert any("extractor_only, seed 0: finished before, skipped" in line for line in lines)


def test_a_pilot_of_a_stage_row_keeps_its_stage():
    spec = dataclasses.replace(MICRO, variants=(STAGE_ROW, MICRO.variants[0]), claims=())
    assert [s.name for s in spec.pilot_spec("easier").stages] == ["extractor"]
