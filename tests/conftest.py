import os

import pytest
import torch

# Triton's interpreter must be chosen before any kernel module is imported: on a machine without a
# GPU it runs the Triton tests on the CPU; with one, the kernels compile for it (the GPU check sets
# TRITON_INTERPRET=0 explicitly). Importing torch first is fine: it does not import triton.
os.environ.setdefault("TRITON_INTERPRET", "0" if torch.cuda.is_available() else "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _private_user_cache(tmp_path_factory):
    """Caches that default to $XDG_CACHE_HOME (the feature cache of pyfacex eval, the record index's
    fallback) go to a folder of this test session, not to the user's home."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("user_cache")))
        yield
