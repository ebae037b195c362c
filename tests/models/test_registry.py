"""The model registry: names, documentation, errors."""
import pytest
import torch.nn as nn

from pyfacex.models import registry
from pyfacex.models.registry import create_model, list_models, register_model


def test_register_list_and_create(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", {})
    monkeypatch.setattr(registry, "_load_entry_points", lambda: None)

    @register_model
    def tiny_linear(width: int = 3) -> nn.Module:
        """A linear layer (for the test)."""
        return nn.Linear(width, width)

    assert list_models() == ["tiny_linear"] and list_models("tiny_*") == ["tiny_linear"] and list_models("x*") == []
    assert create_model("tiny_linear", width=5).in_features == 5
    with pytest.raises(KeyError, match="unknown model 'tiny_lin'.*similar: tiny_linear"):
        create_model("tiny_lin")


def test_a_variant_needs_a_docstring_and_a_free_name(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", {})

    def undocumented():
        return nn.Identity()

    with pytest.raises(ValueError, match="docstring"):
        register_model(undocumented)

    @register_model
    def taken() -> nn.Module:
        """One."""
        return nn.Identity()

    def taken() -> nn.Module:  # noqa: F811 - a second function under the same name
        """Two."""
        return nn.Identity()

    with pytest.raises(ValueError, match="already registered"):
        register_model(taken)


def test_every_registered_variant_is_documented():
    names = list_models()
    assert names, "no model is registered"
    for name in names:
        assert registry._MODELS[name].__doc__.strip(), name
