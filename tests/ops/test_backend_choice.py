"""Which backend ``auto`` and an explicit request pick per op and device (issue: native kernels are
recorded per device type, so that a CUDA tensor never reaches the C++-only margin kernels)."""
from __future__ import annotations

import warnings

import pytest
import torch

import pyfacex.ops as ops
from pyfacex import _ext
from pyfacex.ops import _backend, attention, margin, sets

CUDA = torch.device("cuda")


@pytest.fixture
def gpu_build(monkeypatch):
    """An installation whose native build has CUDA kernels, seen from a machine with a GPU."""
    monkeypatch.setattr(_backend, "native", _ext.NativeStatus(True, True, torch.__version__, ""))
    monkeypatch.setattr(_backend, "_fallback_warned", set())


def _triton(monkeypatch, usable: bool) -> None:
    monkeypatch.setattr(_backend, "_triton_usable", lambda device: usable)


def test_margin_native_is_cpu_only(gpu_build, monkeypatch):
    _triton(monkeypatch, True)
    assert ops.available_backends("cuda", op="margin_cross_entropy") == ["reference", "triton"]
    assert "native" in ops.available_backends("cuda", op="set_max")
    assert "native" in ops.available_backends("cuda")  # some op has CUDA kernels
    assert _backend.resolve("cosine_logsumexp", margin._KERNELS, CUDA) == "triton"
    with ops.use_backend("native"), pytest.raises(RuntimeError, match=r"cover \('cpu',\) only, not 'cuda'"):
        _backend.resolve("cosine_logsumexp", margin._KERNELS, CUDA)


def test_auto_without_triton_runs_the_margin_reference_on_cuda_with_one_warning(gpu_build, monkeypatch):
    _triton(monkeypatch, False)
    with pytest.warns(RuntimeWarning, match="cosine_logsumexp runs on its pure-PyTorch reference on cuda: "
                                            r"it has native kernels for \('cpu',\) only and triton is unavailable"):
        assert _backend.resolve("cosine_logsumexp", margin._KERNELS, CUDA) == "reference"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per op and device type
        assert _backend.resolve("cosine_logsumexp", margin._KERNELS, CUDA) == "reference"
    # ops whose native kernels cover CUDA still get them
    assert _backend.resolve("set_max", sets._KERNELS, CUDA) == "native"
    assert _backend.resolve("segment_linear_attention", attention._LINEAR_KERNELS, CUDA) == "native"


def test_cpu_choices_are_unchanged():
    found = ops.available_backends("cpu", op="margin_cross_entropy")
    assert found[0] == "reference"
    assert ("native" in found) == _ext.native.loaded


def test_unknown_op_names_the_ops_that_dispatch():
    with pytest.raises(ValueError, match=r"op must be one of \[.*'margin_cross_entropy'.*\].*'softmax'"):
        ops.available_backends("cpu", op="softmax")
