"""The model registry: one small entry point per variant, built by name (as timm's).

    @register_model
    def lgaf_r100(**overrides) -> nn.Module: ...

    model = create_model("lgaf_r100", num_classes=1000)
    list_models("lgaf*")
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable

import torch.nn as nn

__all__ = ["register_model", "create_model", "list_models"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its name; its docstring is the variant's documentation."""
    name = fn.__name__
    if name in _MODELS and _MODELS[name] is not fn:
        raise ValueError(f"register_model: a model named {name!r} is already registered")
    if not fn.__doc__:
        raise ValueError(f"register_model: {name} needs a docstring (what it builds, the paper's equations)")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    _load_entry_points()
    return sorted(name for name in _MODELS if fnmatch.fnmatchcase(name, pattern))


def create_model(name: str, **overrides) -> nn.Module:
    """Build the model registered as ``name``; ``overrides`` go to its entry point.

    Raises:
        KeyError: an unknown name (the message lists the close matches and how to list all).
    """
    _load_entry_points()
    if name not in _MODELS:
        close = [n for n in _MODELS if name.split("_")[0] in n][:8]
        raise KeyError(f"unknown model {name!r}" + (f"; similar: {', '.join(close)}" if close else "")
                       + "; see pyfacex.models.list_models()")
    return _MODELS[name](**overrides)


def _load_entry_points() -> None:
    # The entry points live in the model modules; importing the package registers them all.
    from . import variants  # noqa: F401
