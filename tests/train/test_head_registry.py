"""The head registry (pyfacex.nn.heads): every registered kind builds from a config, trains and resumes
exactly; a registered factory is all a new head needs; parameters are checked per kind."""
import math

import pytest
import torch
from torch import nn

from pyfacex.nn import HeadParameterError, create_head, head_parameters, list_heads, register_head
from pyfacex.nn import heads as head_registry
from pyfacex.train import ConfigError, create_trainer, load_config

from .test_trainer import assert_same_states, make_config, states


@pytest.mark.parametrize("kind", list_heads())
def test_every_registered_kind_trains_a_step_and_resumes_exactly(kind, tiny_faces, tmp_path):
    values = {"head.kind": kind, "epochs": 1, "max_steps": 2, "checkpoint_every": 1, "keep_checkpoints": 5}
    full = create_trainer(make_config(tiny_faces, tmp_path / "full", **values))
    head = full.modules["head"]
    assert head.weight.shape[0] == full.num_classes
    before = head.weight.detach().clone()
    assert math.isfinite(full.fit()["loss"])
    assert not torch.equal(head.weight, before)  # the head learned
    resumed = create_trainer(make_config(tiny_faces, tmp_path / "resumed", **values))
    resumed.fit(resume=tmp_path / "full" / "checkpoints" / "step_00000001")
    assert resumed.step == 2
    assert_same_states(states(full), states(resumed))


def test_config_parameters_reach_the_head_and_round_trip(tiny_faces, tmp_path):
    config = make_config(tiny_faces, tmp_path, **{"head.kind": "cosface", "head.margin": 0.25, "head.s": 30})
    assert config.head.params == {"margin": 0.25, "s": 30}
    head = create_trainer(config).modules["head"]
    assert (head.s, head.m3) == (30.0, 0.25)
    from pyfacex.train.config import config_from_dict, config_to_dict

    flat = config_to_dict(config)["head"]
    assert flat == {"kind": "cosface", "margin": 0.25, "s": 30}  # laid out as a recipe writes it
    assert config_from_dict(config_to_dict(config)) == config


@pytest.mark.parametrize("overrides, message", [
    (["head.kind=partial_fc", "head.sample_rate=0"], "head.sample_rate: expected a number in (0, 1], got 0.0"),
    (["head.kind=softmax", "head.s=64"], "head.s: not a parameter of this kind; its parameters: label_smoothing"),
    (["head.kind=adaface", "head.h=-1"], "head.h: expected a number >= 0, got -1.0"),
    (["head.kind=combined", "head.m1=0.5"], "head.m1: expected a number >= 1, got 0.5"),
    (["head.kind=sphereface", "head.margin=0.9"], "head.margin: expected a number >= 1, got 0.9"),
    (["head.margin=large"], "head.margin: expected a number, got 'large'"),
])
def test_each_kind_checks_its_own_parameters(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert str(info.value).startswith(message)


def test_defaults_are_the_factory_signature_and_copies():
    params = head_parameters("arcface")
    assert params == {"s": 64.0, "margin": 0.5, "grad": "exact", "label_smoothing": 0.0}
    params["s"] = 1.0
    assert head_parameters("arcface")["s"] == 64.0
    with pytest.raises(ValueError, match="head.kind: expected one of adaface, arcface"):
        head_parameters("arc")
    with pytest.raises(HeadParameterError) as info:
        create_head("cosface", 8, 4, m=0.3)
    assert info.value.parameter == "m" and "its parameters: s, margin, grad, label_smoothing" in str(info.value)


class _NormSoftmax(nn.Module):
    """A toy head for the registry tests: softmax over temperature-scaled cosines."""

    def __init__(self, dim, num_classes, temperature):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, dim) * 0.01)
        self.temperature = temperature

    def forward(self, embeddings, labels):
        cosines = nn.functional.normalize(embeddings) @ nn.functional.normalize(self.weight).T
        return nn.functional.cross_entropy(cosines / self.temperature, labels)


@pytest.fixture
def private_registry(monkeypatch):
    """The registry as a copy, so a head registered by a test is gone afterwards."""
    monkeypatch.setattr(head_registry, "_KINDS", dict(head_registry._KINDS))


def test_a_registered_factory_is_all_a_new_head_needs(private_registry, tiny_faces, tmp_path):
    @register_head("norm_softmax")
    def norm_softmax(dim, num_classes, *, temperature=0.1):
        if not temperature > 0:
            raise HeadParameterError("norm_softmax", "temperature", f"expected a number > 0, got {temperature!r}")
        return _NormSoftmax(dim, num_classes, temperature)

    assert "norm_softmax" in list_heads() and head_parameters("norm_softmax") == {"temperature": 0.1}
    config = make_config(tiny_faces, tmp_path, max_steps=2, **{"head.kind": "norm_softmax", "head.temperature": 0.05})
    trainer = create_trainer(config)
    assert isinstance(trainer.modules["head"], _NormSoftmax) and trainer.modules["head"].temperature == 0.05
    assert math.isfinite(trainer.fit()["loss"])
    with pytest.raises(ConfigError, match=r"^head.temperature: expected a number > 0, got 0"):
        make_config(tiny_faces, tmp_path, **{"head.kind": "norm_softmax", "head.temperature": 0})


def test_bad_registrations(private_registry):
    with pytest.raises(ValueError, match="'arcface' is already registered"):
        register_head("arcface", lambda dim, num_classes: None)
    with pytest.raises(TypeError, match=r"expected \(dim, num_classes, \*, \.\.\.\)"):
        register_head("a", lambda num_classes, dim: None)
    with pytest.raises(TypeError, match=r"keyword-only with a default, got \['s'\]"):
        register_head("b", lambda dim, num_classes, s=1.0: None)
    with pytest.raises(TypeError, match=r"keyword-only with a default, got \['s'\]"):
        register_head("c", lambda dim, num_classes, *, s: None)
    with pytest.raises(ValueError, match="kind must be a non-empty string"):
        register_head("", lambda dim, num_classes: None)
    assert not {"a", "b", "c"} & set(list_heads())
