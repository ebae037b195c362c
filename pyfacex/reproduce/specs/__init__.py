"""The registry of reproduction specs: one module per paper in this package, each defining ``SPEC``
(an :class:`~pyfacex.reproduce.spec.ExperimentSpec`).

Names starting with ``_`` are runnable but unlisted (``_micro``: the seconds-long spec the tests run).
"""
from __future__ import annotations

import importlib

from ..spec import ExperimentSpec

__all__ = ["list_specs", "get_spec"]

_MODULES = {"lgaf": "lgaf", "lfenet": "lfenet", "fanface": "fanface", "faceagg": "faceagg", "qaface": "qaface",
            "_micro": "micro"}
"""Spec name -> module of this package defining ``SPEC``, the papers in the order of the README."""


def list_specs(private: bool = False) -> list[str]:
    """The registered spec names (with ``private``, also those starting with ``_``)."""
    return [name for name in _MODULES if private or not name.startswith("_")]


def get_spec(name: str) -> ExperimentSpec:
    """The spec registered as ``name``.

    Raises:
        ValueError naming ``PAPER`` and listing the registered specs when ``name`` is none of them.
    """
    if name not in _MODULES:
        listed = ", ".join(list_specs()) or "none registered yet"
        raise ValueError(f"PAPER: expected one of the registered specs ({listed}), got {name!r}")
    spec = importlib.import_module(f".{_MODULES[name]}", __package__).SPEC
    if spec.name != name:
        raise ValueError(f"{__package__}.{_MODULES[name]}: SPEC.name is {spec.name!r}, registered as {name!r}")
    return spec
