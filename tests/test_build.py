"""The build's own checks (CMakeLists.txt), run as a CMake configure step against a fake nvcc."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.skipif(torch.version.cuda is None, reason="the check compares nvcc with a CUDA build of torch"),
    pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed"),
]


def _configure(tmp_path: Path, release: str, mode: str) -> tuple[int, str]:
    """CMake's configure step of pyfacex with an nvcc that only answers --version with ``release``:
    its return code and its messages with CMake's line wrapping undone."""
    nvcc = tmp_path / "nvcc"
    nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.0'\n")
    nvcc.chmod(0o755)
    done = subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(tmp_path / "build"), f"-DCMAKE_CUDA_COMPILER={nvcc}",
         f"-DPython_EXECUTABLE={sys.executable}", f"-DPYFACEX_CUDA={mode}"],
        capture_output=True, text=True, timeout=120)
    return done.returncode, " ".join(done.stderr.split())


def _other_major() -> str:
    return f"{int(torch.version.cuda.split('.')[0]) - 1}.8"


def test_an_nvcc_of_another_major_version_builds_cpu_kernels_only(tmp_path):
    code, messages = _configure(tmp_path, _other_major(), "AUTO")
    assert code == 0, messages
    assert (f"is CUDA {_other_major()} but torch {torch.__version__} "
            f"was built with CUDA {torch.version.cuda}") in messages
    assert "Building the CPU kernels only" in messages


def test_required_cuda_with_a_mismatched_nvcc_fails(tmp_path):
    code, messages = _configure(tmp_path, _other_major(), "1")
    assert code != 0
    assert f"PYFACEX_CUDA=1 but nvcc ({tmp_path / 'nvcc'}) is CUDA {_other_major()}" in messages


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc on PATH")
def test_the_matching_nvcc_builds_the_cuda_kernels(tmp_path):
    nvcc = shutil.which("nvcc")
    says = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    if f"release {torch.version.cuda}" not in says:
        pytest.skip(f"nvcc on PATH is not torch's CUDA {torch.version.cuda}")
    done = subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(tmp_path / "build"), f"-DCMAKE_CUDA_COMPILER={nvcc}",
         f"-DPython_EXECUTABLE={sys.executable}"], capture_output=True, text=True, timeout=300)
    messages = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0, messages
    assert "pyfacex: building CUDA kernels for architectures" in messages and "CPU kernels only" not in messages
