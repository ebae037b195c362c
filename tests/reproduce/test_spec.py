"""A malformed spec is refused with an error that names the field."""
import dataclasses

import pytest

from pyfacex.reproduce import Claim, Evaluation, Metric, Protocol, SpecError, Stage, Variant, get_spec
from pyfacex.reproduce.spec import merge_recipes, stage_references

MICRO = get_spec("_micro")


def _with(**changes):
    return dataclasses.replace(MICRO, **changes)


@pytest.mark.parametrize("changes, message", [
    (dict(claims=(MICRO.claims[0], Claim("finetuned", "gfe", "LFW"))),
     "claims[1].baseline: 'gfe' is not a variant; variants: arcface, finetuned"),
    (dict(claims=(Claim("finetuned", "arcface", "LFW@8px"),)), "claims[0].metric: 'LFW@8px' is not a metric"),
    (dict(claims=(Claim("finetuned", "finetuned", "LFW"),)), "claims[0].baseline: the claim compares"),
    (dict(claims=(Claim("finetuned", "arcface", "LFW", direction="<"),)), "claims[0].direction"),
    (dict(claims=(Claim("finetuned", "arcface", "LFW", margin=0.5),)), "claims[0].margin"),
    (dict(variants=(MICRO.variants[0], MICRO.variants[0])), "variants[1].name: 'arcface' is given twice"),
    (dict(variants=(Variant("a/b"),)), "variants[0].name: expected letters"),
    (dict(variants=(MICRO.variants[0], Variant("x", paper={"TinyFace": 1.0}))), "variants[1].paper: 'TinyFace'"),
    (dict(variants=(MICRO.variants[0], Variant("x", {"optim": {"lr": -1.0}}))), "variants[1].recipe: optim.lr"),
    (dict(variants=(MICRO.variants[0], Variant("x", {"model": {"weights": "$stage:fan"}}))),
     "variants[1].recipe: refers to fan: no such stage; stages: extractor"),
    (dict(stages=(Stage("extractor", {"model": {"weights": "$stage:extractor"}}),)),
     "stages[0].recipe: refers to extractor: stages take no stage"),
    (dict(evaluations=(Evaluation("lfw", "ytf"),)), "evaluations[0].protocol: 'ytf' is not a protocol of the world"),
    (dict(evaluations=(Evaluation("lfw", "lfw", options="@fast"),)), "evaluations[0].options"),
    (dict(evaluations=(Evaluation("lfw", "lfw", set_function="max"),)), "evaluations[0].set_function"),
    (dict(metrics=(Metric("LFW", "cfp", "accuracy"),)), "metrics[0].evaluation: 'cfp' is not an evaluation"),
    (dict(seeds=0), "seeds: expected an int >= 1, got 0"),
    (dict(recipe={**MICRO.recipe, "epochs": -1}), "recipe: epochs"),
    (dict(floor_network={"depth": 3}), "floor_network: "),
    (dict(world=dataclasses.replace(MICRO.world, nuisance={"glare": 1.0})), "world.nuisance: "),
    (dict(world=dataclasses.replace(MICRO.world, options={"cohorts": 3})), "world: "),
    (dict(world=dataclasses.replace(MICRO.world, train_options={"frames": 3})), "world.train_options: "),
    (dict(world=dataclasses.replace(MICRO.world, identities=0)), "world.identities: expected an int >= 1"),
    (dict(world=dataclasses.replace(MICRO.world, protocols={"lfw": Protocol("write_lfw")})),
     "world.protocols.lfw: 'write_lfw' is no protocol writer"),
    (dict(world=dataclasses.replace(MICRO.world, protocols={"lfw": Protocol("write_lfw_like", {"fold": 2})})),
     "world.protocols.lfw: "),
    (dict(pilot_variant="gfe"), "pilot_variant: 'gfe' is not a variant; variants: arcface, finetuned"),
    (dict(pilot_worlds={"hard": {"dificulty": 0.5}}), "pilot_worlds['hard']: dificulty: not a World field"),
    (dict(pilot_worlds={"hard": {"difficulty": 1.5}}), "pilot_worlds['hard']: "),
    (dict(pilot_worlds={"a b": {"difficulty": 0.5}}), "pilot_worlds['a b']: expected a name"),
])
def test_a_malformed_spec_names_the_field(changes, message):
    with pytest.raises(SpecError) as error:
        _with(**changes)
    assert str(error.value).startswith("spec '_micro': ")
    assert message in str(error.value)


def test_pilot_spec_changes_the_world_and_keeps_the_baseline_alone():
    """Mapping fields of the world are updated key by key; the pilot trains one variant, no claim."""
    spec = _with(world=dataclasses.replace(MICRO.world, nuisance={"blur": 1.0, "occlusion": 0.2}))
    pilot = spec.pilot_spec("harder")
    assert pilot.world.difficulty == 0.4 and dict(pilot.world.nuisance) == {"blur": 4.0, "occlusion": 0.2}
    assert [v.name for v in pilot.variants] == ["arcface"] and pilot.claims == () and pilot.stages == ()
    assert spec.world.difficulty == 0.2 and dict(spec.world.nuisance) == {"blur": 1.0, "occlusion": 0.2}
    finetuned = _with(pilot_variant="finetuned").pilot_spec("easier")   # keeps the stage its recipe uses
    assert [v.name for v in finetuned.variants] == ["finetuned"] and [s.name for s in finetuned.stages] == ["extractor"]


def test_world_options_reach_the_world_untouched():
    """New world options need no change in the spec: any SyntheticFaceWorld keyword passes through."""
    spec = _with(world=dataclasses.replace(MICRO.world, options={"framing": "landmark", "chunk": 8}))
    world = spec.world.data_settings()["world"]
    assert (world["framing"], world["chunk"], world["nuisance"]) == ("landmark", 8, {"difficulty": 0.2})


def test_cell_recipes_merge_base_variant_and_quick_overrides():
    recipe = MICRO.cell_recipe("finetuned", quick=True)
    assert recipe["data"]["train"] == "$train" and recipe["data"]["batch_size"] == 8   # base kept
    assert recipe["head"]["kind"] == "cosface" and recipe["optim"]["lr"] == 0.01        # the variant's
    assert recipe["model"]["kwargs"]["widths"] == [8, 8, 16, 16]                        # merged key by key
    assert recipe["epochs"] == 1 and MICRO.cell_recipe("finetuned", quick=False)["epochs"] == 2
    assert stage_references(recipe) == {"extractor"}
    assert MICRO.recipe["data"].get("train") is None   # the spec's own dicts are never changed
    # kwargs are replaced whole, as a recipe's base: merges them
    merged = merge_recipes({"model": {"kwargs": {"a": 1}}}, {"model": {"kwargs": {"b": 2}}})
    assert merged == {"model": {"kwargs": {"b": 2}}}
