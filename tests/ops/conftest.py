"""Fixtures of the op tests."""
from __future__ import annotations

import pytest

import pyfacex.ops as ops

CPU_BACKENDS = [b for b in ("reference", "native") if b in ops.available_backends("cpu")]


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    """Runs the test once per backend available on CPU, inside ``use_backend``."""
    with ops.use_backend(request.param):
        yield request.param
