"""The loader and backend choice: what is reported, and what happens when _C is unusable."""
from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import warnings

import pytest
import torch

import pyfacex.ops as ops
from pyfacex import _ext
from pyfacex.ops import _backend


def test_loaded_extension_matches_the_running_torch():
    if _ext.native.loaded:
        assert _ext.native.built_for == torch.__version__
        assert "native" in ops.available_backends("cpu")
    else:
        assert "native" not in ops.available_backends("cpu")


@pytest.mark.skipif(os.environ.get("PYFACEX_CUDA") == "0", reason="CUDA kernels disabled by PYFACEX_CUDA=0")
def test_cuda_torch_with_nvcc_builds_the_cuda_kernels():
    if torch.version.cuda is None or shutil.which("nvcc") is None:
        pytest.skip("CPU-only torch or no nvcc: nothing to build CUDA kernels with")
    assert _ext.native.loaded, _ext.native.reason
    assert _ext.native.cuda_kernels


def _fake_build(monkeypatch, tmp_path, info: dict | None):
    so = tmp_path / "_C.so"
    so.write_bytes(b"")
    if info is not None:
        (tmp_path / "_build_info.json").write_text(json.dumps(info))
    spec = importlib.machinery.ModuleSpec("pyfacex._C", None, origin=str(so))
    monkeypatch.setattr(_ext.importlib.util, "find_spec", lambda name: spec)


def test_extension_built_for_another_torch_is_not_loaded(monkeypatch, tmp_path):
    _fake_build(monkeypatch, tmp_path, {"torch_version": "1.0.0", "torch_cuda": "", "cuda_kernels": False})
    status = _ext._load()
    assert not status.loaded
    assert "built against torch 1.0.0" in status.reason and torch.__version__ in status.reason
    assert "pip install --no-build-isolation" in status.reason


def test_missing_extension_is_reported(monkeypatch):
    monkeypatch.setattr(_ext.importlib.util, "find_spec", lambda name: None)
    status = _ext._load()
    assert not status.loaded and "not built" in status.reason


def test_missing_build_info_is_reported(monkeypatch, tmp_path):
    _fake_build(monkeypatch, tmp_path, None)
    status = _ext._load()
    assert not status.loaded and "_build_info.json is missing" in status.reason


def test_auto_falls_back_to_reference_with_one_warning(monkeypatch):
    broken = _ext.NativeStatus(False, False, "1.0.0", "pyfacex._C was built against torch 1.0.0; rebuild")
    monkeypatch.setattr(_backend, "native", broken)
    monkeypatch.setattr(_backend, "_fallback_warned", set())
    x = torch.randn(4, 3)
    offsets = torch.tensor([0, 1, 4])
    with pytest.warns(RuntimeWarning, match="built against torch 1.0.0"):
        y = ops.global_concat(x, offsets)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ops.global_concat(x, offsets)  # no second warning
    with ops.use_backend("reference"):
        assert torch.equal(y, ops.global_concat(x, offsets))
    with ops.use_backend("native"), pytest.raises(RuntimeError, match="native backend is unavailable.*1.0.0"):
        ops.global_concat(x, offsets)


def test_backend_names_are_checked():
    with pytest.raises(ValueError, match="backend must be one of"):
        with ops.use_backend("cuda"):
            pass
    with ops.use_backend("triton"), pytest.raises(ValueError, match="global_concat has no 'triton' backend"):
        ops.global_concat(torch.randn(2, 2), torch.tensor([0, 2]))


def test_use_backend_nests_and_restores():
    assert ops.current_backend() == "auto"
    with ops.use_backend("reference"):
        with ops.use_backend("native"):
            assert ops.current_backend() == "native"
        assert ops.current_backend() == "reference"
    assert ops.current_backend() == "auto"
