"""Shared by the reproduction tests: one intra-op thread (tiny tensors gain nothing from more, and
beside other processes OpenMP's spinning threads slow a step many times)."""
import pytest


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
