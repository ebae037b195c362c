"""pyfacex info: the facts dict, its JSON, and the text."""
import json

import numpy
import torch

from pyfacex._ext import native
from pyfacex.cli import main
from pyfacex.cli.info import NOT_INSTALLED, collect_info, format_info
from pyfacex.ops import available_backends


def test_json_has_the_facts_of_this_installation(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) == {"versions", "torch_build", "platform", "native", "cuda", "triton", "auto"}
    versions = info["versions"]
    assert {"pyfacex", "python", "torch", "numpy", "pillow", "simplejpeg", "triton", "matplotlib", "pyyaml",
            "tensorboard"} <= set(versions)
    assert versions["torch"] == torch.__version__ and versions["numpy"] == numpy.__version__
    assert all(isinstance(v, str) and v for v in versions.values())
    assert info["torch_build"] == (f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build")
    assert info["native"]["loaded"] == native.loaded and info["native"]["cuda_kernels"] == native.cuda_kernels
    assert (info["native"]["reason"] is None) == native.loaded
    assert info["cuda"]["available"] == torch.cuda.is_available()
    assert info["cuda"]["device_count"] == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if not torch.cuda.is_available():
        assert info["cuda"]["reason"] in ("no CUDA device visible", "CPU-only torch build")
    assert info["auto"]["cpu"]["available"] == available_backends("cpu")
    expected = "native" if "native" in available_backends("cpu") else "reference"
    assert info["auto"]["cpu"]["ops"]["margin_cross_entropy"] == info["auto"]["cpu"]["ops"]["set_max"] == expected
    # the margin loss has C++ kernels only: on CUDA, auto picks Triton or the reference, never native
    assert info["auto"]["cuda"]["ops"]["margin_cross_entropy"] in ("triton", "reference")


def test_triton_reasons(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    info = collect_info()
    if info["versions"]["triton"] == NOT_INSTALLED:
        assert info["triton"] == {"available": False, "reason": "triton is not installed", "interpreter": True}
    else:
        assert info["triton"]["available"] and "TRITON_INTERPRET=1" in info["triton"]["note"]
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    info = collect_info()
    if info["versions"]["triton"] != NOT_INSTALLED and not torch.cuda.is_available():
        assert not info["triton"]["available"] and "no GPU" in info["triton"]["reason"]


def test_text(capsys):
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert text.strip() == format_info(collect_info()).strip()
    assert f"torch        {torch.__version__}" in text
    assert "native extension:" in text and "auto on CPU:" in text and "auto on CUDA:" in text
    assert ("loaded" if native.loaded else "not loaded") in text
