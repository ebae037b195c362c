"""Backend choice for every op: ``use_backend`` and ``available_backends``.

Backends:
    ``reference``: the pure-PyTorch definition of the op (the oracle of every test);
    ``native``: the C++ (CPU) and CUDA kernels of ``pyfacex._C``, registered as ``torch.ops.pyfacex.*``;
    ``triton``: Triton kernels (GPU, or CPU tensors under ``TRITON_INTERPRET=1``), for the op
    families that have them;
    ``auto`` (default): native on CPU; on CUDA, Triton where the op has it, else native where the op's
    native kernels cover CUDA; the reference otherwise, with one warning per op naming the cause.

Each op module declares its :class:`Kernels` (the backends it has and the device types its native
kernels cover) with :func:`declare_kernels`, so that :func:`resolve` and :func:`available_backends`
answer per op and a backend is never picked for a device it has no kernels for.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .._ext import native
from .._thread_settings import overriding
from ..triton.options import unsupported_reason  # torch only: triton itself stays optional

BACKENDS = ("auto", "reference", "native", "triton")
_state = threading.local()  # per thread (pyfacex._thread_settings says why)
_fallback_warned: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Kernels:
    """What an op family implements besides its reference.

    Attributes:
        backends: ``"native"`` and/or ``"triton"``.
        native_devices: the device types its native kernels cover: ``("cpu", "cuda")`` for C++ and
            CUDA kernels, or for a native path composed of ATen ops (which run anywhere torch does);
            ``("cpu",)`` when only C++ kernels exist.
    """

    backends: tuple[str, ...]
    native_devices: tuple[str, ...] = ("cpu", "cuda")

    @property
    def implemented(self) -> tuple[str, ...]:
        return ("reference", *self.backends)


_KERNELS: dict[str, Kernels] = {}


def declare_kernels(kernels: Kernels, *ops: str) -> Kernels:
    """Record ``kernels`` as what the public ops ``ops`` dispatch to (for :func:`available_backends`)."""
    for op in ops:
        _KERNELS[op] = kernels
    return kernels


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
    with overriding(_state, "backend", name, "auto"):
        yield


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


def available_backends(device: torch.device | str = "cpu", op: str | None = None,
                       dtype: torch.dtype | None = None) -> list[str]:
    """The backends that can run ``op`` (or, without one, any op) on ``device`` in this installation.

    Args:
        device: where the op's tensors live.
        op: the name of a public op of :mod:`pyfacex.ops` that dispatches (``"margin_cross_entropy"``,
            ``"set_max"``, ...); None: the backends some op can use on ``device``.
        dtype: the inputs' dtype: Triton is left out where the GPU cannot run its dots on it
            (bfloat16 and float64 need compute capability 8.0). None: any dtype.

    Example:
        >>> "reference" in pyfacex.ops.available_backends("cpu")
        True
        >>> "native" in pyfacex.ops.available_backends("cuda", op="margin_cross_entropy")  # C++ kernels only
        False
    """
    device = torch.device(device)
    if op is not None and op not in _KERNELS:
        raise ValueError(f"op must be one of {sorted(_KERNELS)} (the ops that choose a backend), got {op!r}")
    found = ["reference"]
    if _native_usable(device) and (op is None or _covers(_KERNELS[op], device)):
        found.append("native")
    if (op is None or "triton" in _KERNELS[op].backends) and _triton_runs(device, dtype):
        found.append("triton")
    return found


def _triton_runs(device: torch.device, dtype: torch.dtype | None) -> bool:
    """Triton can run here, and the GPU can run its dots on ``dtype`` (None: any dtype)."""
    return _triton_usable(device) and not (dtype is not None and unsupported_reason(dtype, device))


def _covers(kernels: Kernels, device: torch.device) -> bool:
    """``kernels`` has native kernels for ``device``'s type."""
    return "native" in kernels.backends and device.type in kernels.native_devices


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


def resolve(op: str, kernels: Kernels, device: torch.device, dtype: torch.dtype | None = None) -> str:
    """The backend that runs ``op`` on ``device``, given the op family's ``kernels`` and the inputs'
    ``dtype`` (which decides whether the GPU can run the Triton kernels' dots)."""
    requested = current_backend()
    if requested != "auto":
        if requested not in kernels.implemented:
            raise ValueError(f"{op} has no {requested!r} backend; it has {kernels.implemented}")
        if requested == "native" and device.type not in kernels.native_devices:
            raise RuntimeError(f"{op}: its native kernels cover {kernels.native_devices} only, not "
                               f"{device.type!r}; use_backend('auto') picks a backend that runs there")
        if requested == "native" and not _native_usable(device):
            raise RuntimeError(f"{op}: the native backend is unavailable: {native_unavailable_reason(device)}")
        if requested == "triton" and not _triton_usable(device):
            raise RuntimeError(f"{op}: the triton backend needs triton and a CUDA device (or TRITON_INTERPRET=1)")
        reason = unsupported_reason(dtype, device) if requested == "triton" and dtype is not None else ""
        if reason:
            raise RuntimeError(f"{op}: the triton backend cannot run these inputs: {reason}")
        return requested
    chosen = _auto(kernels, device, dtype)
    if chosen == "reference" and "native" in kernels.backends:
        _warn_fallback(op, kernels, device)
    return chosen


def _auto(kernels: Kernels, device: torch.device, dtype: torch.dtype | None = None) -> str:
    if device.type == "cuda" and "triton" in kernels.backends and _triton_runs(device, dtype):
        return "triton"
    if _covers(kernels, device) and _native_usable(device):
        return "native"
    return "reference"


def auto_backends(device: torch.device | str) -> dict[str, str]:
    """What ``use_backend("auto")`` runs each dispatching op with on ``device``: {op name: backend}."""
    device = torch.device(device)
    return {op: _auto(kernels, device) for op, kernels in sorted(_KERNELS.items())}


def _warn_fallback(op: str, kernels: Kernels, device: torch.device) -> None:
    """Once per op and device type: why ``auto`` runs ``op`` on its reference."""
    if (op, device.type) in _fallback_warned:
        return
    _fallback_warned.add((op, device.type))
    if device.type not in kernels.native_devices:
        cause = (f"it has native kernels for {kernels.native_devices} only"
                 + (" and triton is unavailable" if "triton" in kernels.backends else ""))
    else:
        cause = native_unavailable_reason(device)
    warnings.warn(f"pyfacex: {op} runs on its pure-PyTorch reference on {device.type}: {cause}",
                  RuntimeWarning, stacklevel=4)
