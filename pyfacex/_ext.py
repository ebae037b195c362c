"""Loading of the native extension ``pyfacex._C`` and the facts about it.

``import pyfacex`` always works. When ``_C`` is missing, fails to load, or was compiled against a
different torch than the one running, the native backend is reported unavailable with the reason
and the fix, and ops under ``use_backend("auto")`` fall back to the pure-PyTorch reference (with one
warning, see :mod:`pyfacex.ops._backend`).
"""
from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import torch

_REBUILD = "reinstall pyfacex against this torch: pip install --no-build-isolation ."


@dataclass(frozen=True)
class NativeStatus:
    """What the loader found.

    Attributes:
        loaded: ``_C`` is loaded and its ops are registered as ``torch.ops.pyfacex.*``.
        cuda_kernels: ``_C`` contains the CUDA kernels.
        built_for: the torch version ``_C`` was compiled against ("" when unknown).
        reason: why ``_C`` is not loaded, with the fix ("" when loaded).
    """

    loaded: bool
    cuda_kernels: bool
    built_for: str
    reason: str


def _load() -> NativeStatus:
    spec = importlib.util.find_spec("pyfacex._C")
    if spec is None or spec.origin is None:
        return NativeStatus(False, False, "", f"pyfacex._C is not built; {_REBUILD}")
    # Written by CMake beside _C (also in editable installs, where _C is not in the source tree).
    build_info = Path(spec.origin).with_name("_build_info.json")
    if not build_info.exists():
        return NativeStatus(False, False, "", f"{build_info} is missing, so pyfacex._C cannot be trusted; {_REBUILD}")
    info = json.loads(build_info.read_text())
    built_for = info.get("torch_version", "")
    if built_for != torch.__version__:
        # Loading a library compiled against another torch risks undefined symbols or, worse, a
        # silently different ABI: refuse before importing it.
        return NativeStatus(
            False, False, built_for,
            f"pyfacex._C was built against torch {built_for} but torch {torch.__version__} is running; {_REBUILD}",
        )
    try:
        module = importlib.import_module("pyfacex._C")
    except (ImportError, OSError) as err:
        return NativeStatus(False, False, built_for, f"pyfacex._C failed to load ({err}); {_REBUILD}")
    return NativeStatus(True, bool(module.cuda_kernels), built_for, "")


native = _load()
