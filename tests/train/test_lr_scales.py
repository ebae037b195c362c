"""Per-module learning rates (``optim.lr_scales``): the groups, their keys' errors, and LFENet's recipe
rates reaching the LIT (LFENet, Sec. IV-B: backbone 1e-4, LIT 0.01)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pyfacex.train import ConfigError, create_trainer
from pyfacex.train.optim import check_lr_scales, scaled_groups

from .conftest import TINY_IRESNET
from .test_trainer import make_config


def _named():
    model = nn.ModuleDict({"backbone": nn.ModuleDict({"layer1": nn.Linear(2, 2), "layer4": nn.Linear(2, 2)}),
                           "lit": nn.Linear(2, 2)})
    model["backbone"]["layer1"].requires_grad_(False)  # frozen: in no group, and names nothing trainable
    return model, list(model.named_parameters())


def test_the_most_specific_key_wins_and_groups_are_ordered_by_key():
    model, named = _named()
    scales = {"lit": 100.0, "backbone": 0.5, "backbone.layer4.weight": 2.0}
    groups = scaled_groups(named, scales)
    assert [(g["name"], g["lr_scale"]) for g in groups] == [("backbone", 0.5), ("backbone.layer4.weight", 2.0),
                                                          ("lit", 100.0)]
    assert groups[0]["params"] == [model["backbone"]["layer4"].bias]
    assert groups[1]["params"] == [model["backbone"]["layer4"].weight]
    # the keys' order does not change the groups: a checkpoint's optimiser state loads group by group
    assert [g["name"] for g in scaled_groups(named, dict(reversed(scales.items())))] == [g["name"] for g in groups]
    unscaled = scaled_groups(named, {"lit": 3.0})
    assert [(g["name"], g["lr_scale"], len(g["params"])) for g in unscaled] == [("", 1.0, 2), ("lit", 3.0, 2)]


def test_an_unknown_or_frozen_key_lists_the_valid_names():
    _, named = _named()
    check_lr_scales({"backbone.layer4": 2.0, "lit.weight": 1.0}, named)
    for key in ("head", "backbone.layer1", "lit.wei"):
        with pytest.raises(ConfigError, match=rf"optim.lr_scales: '{key}' names no trained module; "
                                              r"valid names: backbone, lit"):
            check_lr_scales({key: 2.0}, named)


def _lfenet_config(tiny_faces, tmp_path, **values):
    return make_config(tiny_faces, tmp_path, trainer="sets", **{
        "model.name": "lfenet_irse50", "model.kwargs": {"backbone_kwargs": dict(TINY_IRESNET)},
        "data.sets_per_batch": 4, "data.set_size": 3, "checkpoint_every": 100, **values})


def test_lfenet_recipe_rates_move_q_k_and_v(tiny_faces, tmp_path):
    # The recipe's rates (configs/lfenet_irse50_vggface2.yaml): backbone 1e-4, LIT and head 100x.
    # V starts at zero, so Q and K get no gradient at the first step; V moves at the LIT's rate, and
    # from the second step on Q and K move too.
    config = _lfenet_config(tiny_faces, tmp_path, max_steps=3, **{
        "optim.lr": 1e-4, "optim.lr_scales": {"lit": 100.0, "head": 100.0}, "schedule.kind": "constant",
        "optim.weight_decay": 0.0, "head.kind": "softmax"})  # no decay: only gradients move the weights
    trainer = create_trainer(config)
    groups = trainer.optimizers["shared"].param_groups
    assert [(g["name"], g["lr"]) for g in groups] == [("", pytest.approx(1e-4)), ("head", pytest.approx(1e-2)),
                                                      ("lit", pytest.approx(1e-2))]
    lit = trainer.modules["model"].lit
    assert {id(p) for p in groups[2]["params"]} == {id(p) for p in lit.parameters()}
    assert groups[1]["params"] == [trainer.modules["head"].weight, trainer.modules["head"].bias]
    projections = {name: getattr(lit, name).weight for name in ("query", "key", "value")}
    before = {name: w.detach().clone() for name, w in projections.items()}
    trainer.fit()
    # (Weights only: the key's bias adds q·b_k to every score of a query, which the softmax ignores.)
    for name, weight in projections.items():
        assert not torch.equal(weight, before[name]), f"lit.{name} did not move"


def test_an_unknown_lr_scales_key_is_an_error_naming_the_models_modules(tiny_faces, tmp_path):
    with pytest.raises(ConfigError, match=r"'lit2' names no trained module; valid names: backbone, head, lit"):
        create_trainer(_lfenet_config(tiny_faces, tmp_path, **{"optim.lr_scales": {"lit2": 100.0}}))


def test_resume_with_lr_scales_reproduces_the_uninterrupted_run(tiny_faces, tmp_path):
    # The checkpoint's optimiser state loads group by group: the groups must come back the same.
    values = {"max_steps": 4, "checkpoint_every": 2, "keep_checkpoints": 5,
              "optim.lr_scales": {"lit": 100.0, "backbone.layer4": 0.5}}
    full = create_trainer(_lfenet_config(tiny_faces, tmp_path / "full", **values))
    full.fit()
    resumed = create_trainer(_lfenet_config(tiny_faces, tmp_path / "resumed", **{
        **values, "optim.lr_scales": {"backbone.layer4": 0.5, "lit": 100.0}}))  # keys in another order
    resumed.fit(resume=tmp_path / "full" / "checkpoints" / "step_00000002")
    assert [g["name"] for g in resumed.optimizers["shared"].param_groups] == ["", "backbone.layer4", "lit"]
    for name, module in full.modules.items():
        for key, value in module.state_dict().items():
            assert torch.equal(value, resumed.modules[name].state_dict()[key]), f"{name}.{key}"
