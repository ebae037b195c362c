"""Fixtures of the Triton tests (the kernels themselves run under TRITON_INTERPRET=1, see tests/conftest.py)."""
import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: exhaustive (minutes); runs only with PYFACEX_SLOW=1")


@pytest.fixture
def interpreter_only():
    """Skip unless the Triton kernels run under the interpreter (CPU tensors)."""
    pytest.importorskip("triton", reason="triton is not installed (CPU-only torch)")
    from pyfacex.triton import _common

    if not _common.INTERPRET:
        pytest.skip("these tests run the kernels on CPU tensors under TRITON_INTERPRET=1")
