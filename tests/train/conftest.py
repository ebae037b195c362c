"""Tiny synthetic training data shared by the trainer tests (rendered once per session)."""
import pytest

from pyfacex.data.synthetic import Nuisance, SyntheticFaceWorld
from pyfacex.data.synthetic.export import write_training_set

TINY_IRESNET = {"layers": [1, 1, 1, 1], "widths": [8, 8, 16, 16], "num_features": 16, "input_size": 32}
"""Keywords of an iResNet small enough for a training step in milliseconds on 32×32 faces."""


@pytest.fixture(scope="session")
def tiny_faces(tmp_path_factory):
    """A RecordIO set of 8 identities × 6 faces at 32×32 (difficulty 0.2)."""
    world = SyntheticFaceWorld(seed=0, size=32, nuisance=Nuisance(difficulty=0.2))
    return write_training_set(world, tmp_path_factory.mktemp("faces"), 8, 6, formats=("record",), progress=False)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and beside other processes (the 2-rank tests,
    a loaded machine) OpenMP's spinning threads make a step up to 50× slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
