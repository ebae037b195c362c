"""Backend choice for every op: ``use_backend`` and ``available_backends``.

Backends:
    ``reference``: the pure-PyTorch definition of the op (the oracle of every test);
    ``native``: the C++ (CPU) and CUDA kernels of ``pyfacex._C``, registered as ``torch.ops.pyfacex.*``;
    ``triton``: Triton kernels (GPU, or CPU tensors under ``TRITON_INTERPRET=1``), for the op
    families that have them;
    ``auto`` (default): native on CPU; on CUDA, Triton where the op has it, else native; the
    reference, with one warning naming the cause, when the native build is unusable.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
import warnings
from collections.abc import Iterator

import torch

from .._ext import native

BACKENDS = ("auto", "reference", "native", "triton")
# Per thread, like torch's grad mode. A threading.local (not a ContextVar) because torch.compile
# traces reads of it and recompiles when it changes.
_state = threading.local()
_fallback_warned = False


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run the ops called inside the ``with`` block on backend ``name``.

    Args:
        name: one of ``"auto"``, ``"reference"``, ``"native"``, ``"triton"``.

    An explicitly named backend is used or the op raises: an op without that backend raises
    ``ValueError`` naming the backends it has; ``native`` without a usable ``pyfacex._C`` raises
    ``RuntimeError`` with the loader's reason. Only ``auto`` falls back.
    """
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    previous = current_backend()
    _state.backend = name
    try:
        yield
    finally:
        _state.backend = previous


def current_backend() -> str:
    """The backend requested by the innermost :func:`use_backend` (``"auto"`` outside any)."""
    return getattr(_state, "backend", "auto")


def _triton_usable(device: torch.device) -> bool:
    if importlib.util.find_spec("triton") is None:
        return False
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True
    return device.type == "cuda"


def _native_usable(device: torch.device) -> bool:
    if not native.loaded:
        return False
    return device.type == "cpu" or (device.type == "cuda" and native.cuda_kernels)


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """The backends that can run ops on ``device`` in this installation.

    Example:
        >>> "reference" in pyfacex.ops.available_backends("cpu")
        True
    """
    device = torch.device(device)
    found = ["reference"]
    if _native_usable(device):
        found.append("native")
    if _triton_usable(device):
        found.append("triton")
    return found


def native_unavailable_reason(device: torch.device | str = "cpu") -> str:
    """Why ``native`` cannot run on ``device`` ("" when it can)."""
    device = torch.device(device)
    if not native.loaded:
        return native.reason
    if device.type == "cuda" and not native.cuda_kernels:
        return "pyfacex._C was built without CUDA kernels (CPU-only torch, no nvcc, or PYFACEX_CUDA=0)"
    if device.type not in ("cpu", "cuda"):
        return f"pyfacex has no native kernels for device type {device.type!r}"
    return ""


def resolve(op: str, implemented: tuple[str, ...], device: torch.device) -> str:
    """The backend that runs ``op`` on ``device``; ``implemented`` lists the backends the op has."""
    requested = current_backend()
    if requested != "auto":
        if requested not in implemented:
            raise ValueError(f"{op} has no {requested!r} backend; it has {implemented}")
        if requested == "native" and not _native_usable(device):
            raise RuntimeError(f"{op}: the native backend is unavailable: {native_unavailable_reason(device)}")
        if requested == "triton" and not _triton_usable(device):
            raise RuntimeError(f"{op}: the triton backend needs triton and a CUDA device (or TRITON_INTERPRET=1)")
        return requested
    if device.type == "cuda" and "triton" in implemented and _triton_usable(device):
        return "triton"
    if "native" in implemented and _native_usable(device):
        return "native"
    if "native" in implemented:
        _warn_fallback(device)
    return "reference"


def _warn_fallback(device: torch.device) -> None:
    global _fallback_warned
    if not _fallback_warned:
        _fallback_warned = True
        warnings.warn(
            f"pyfacex ops run on the slow pure-PyTorch reference: {native_unavailable_reason(device)}",
            RuntimeWarning,
            stacklevel=4,
        )
