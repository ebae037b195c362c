"""The ``>>>`` examples in pyfacex's docstrings run and print what they show (doctest)."""
from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pyfacex"
# Triton kernel modules need triton (absent from the CPU-only torch build); none carries an example.
MODULES = sorted(
    ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    for path in PACKAGE.rglob("*.py") if ">>>" in path.read_text(encoding="utf-8") and "triton" not in path.parts)


def test_examples_are_found():
    assert {"pyfacex.nn.heads", "pyfacex.models", "pyfacex.align"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             extraglobs={"pyfacex": importlib.import_module("pyfacex")}, verbose=False)
    assert result.attempted > 0, f"{name}: no example ran"
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed (output above)"
