"""``pyfacex info``: versions of pyfacex and its dependencies, and which backends this installation runs.

    pyfacex info [--json]

:func:`collect_info` gathers the facts into a dict (``--json`` prints it as JSON); :func:`format_info`
renders them as text.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys

__all__ = ["add_parser", "collect_info", "format_info"]

# display name -> (distribution name, module to import as a fallback for the version)
_PACKAGES = {
    "pyfacex": ("pyfacex", "pyfacex"),
    "torch": ("torch", "torch"),
    "numpy": ("numpy", "numpy"),
    "pillow": ("pillow", "PIL"),
    "simplejpeg": ("simplejpeg", "simplejpeg"),
    "triton": ("triton", "triton"),
    "matplotlib": ("matplotlib", "matplotlib"),
    "pyyaml": ("PyYAML", "yaml"),
    "tensorboard": ("tensorboard", "tensorboard"),
    "tqdm": ("tqdm", "tqdm"),
}
NOT_INSTALLED = "not installed"


def add_parser(commands) -> None:
    """Add ``info`` to the ``pyfacex`` sub-commands."""
    parser = commands.add_parser("info", help="versions and available backends",
                                 description="Print the versions of pyfacex and its dependencies, whether the "
                                             "native extension, its CUDA kernels, a CUDA device and Triton are "
                                             "usable (and why not), and the backend 'auto' picks.")
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")
    parser.set_defaults(run=_run)


def _version(distribution: str, module: str) -> str:
    """The version of an imported module (``__version__``: what runs), else of the installed
    distribution, else "not installed"."""
    loaded = sys.modules.get(module)
    if getattr(loaded, "__version__", None):
        return str(loaded.__version__)
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        pass
    if importlib.util.find_spec(module) is None:
        return NOT_INSTALLED
    try:
        return str(getattr(importlib.import_module(module), "__version__", "unknown version"))
    except Exception as error:  # noqa: BLE001 - a broken install is a fact to report, not a crash
        return f"installed, fails to import ({type(error).__name__}: {error})"


def _auto_backend(device: str) -> dict:
    """What ``use_backend("auto")`` runs each dispatching op with on ``device``, and what is available there."""
    from ..ops._backend import auto_backends, available_backends, native_unavailable_reason

    return {"available": available_backends(device), "ops": auto_backends(device),
            "native_unavailable": native_unavailable_reason(device) or None}


def collect_info() -> dict:
    """The facts ``pyfacex info`` prints.

    Returns:
        ``{"versions": {name: version or "not installed"}`` (pyfacex, python, torch, numpy, pillow,
        simplejpeg, triton, matplotlib, pyyaml, tensorboard, tqdm), ``"torch_build"``: the CUDA
        version torch was built with or "CPU-only build", ``"platform"``, ``"native"``: {loaded,
        reason, built_for, cuda_kernels}, ``"cuda"``: {available, device_count, devices, reason},
        ``"triton"``: {available, reason, interpreter}, ``"auto"``: {"cpu": ..., "cuda": ...}: per
        device, ``ops`` {op name: the backend ``auto`` picks} and the backends ``available`` there}.
        Reasons are None where the feature is available. JSON-serialisable.
    """
    import torch

    from .._ext import native

    versions = {"pyfacex": _version(*_PACKAGES["pyfacex"]), "python": platform.python_version()}
    versions.update({name: _version(*names) for name, names in _PACKAGES.items() if name != "pyfacex"})
    cuda_build = torch.version.cuda
    torch_build = f"CUDA {cuda_build}" if cuda_build else "CPU-only build"

    if not cuda_build:
        cuda = {"available": False, "device_count": 0, "devices": [], "reason": "CPU-only torch build"}
    elif not torch.cuda.is_available():
        cuda = {"available": False, "device_count": 0, "devices": [], "reason": "no CUDA device visible"}
    else:
        count = torch.cuda.device_count()
        cuda = {"available": True, "device_count": count,
                "devices": [torch.cuda.get_device_name(i) for i in range(count)], "reason": None}

    interpreter = os.environ.get("TRITON_INTERPRET") == "1"
    if versions["triton"] == NOT_INSTALLED:
        triton = {"available": False, "reason": "triton is not installed", "interpreter": interpreter}
    elif interpreter:
        triton = {"available": True, "reason": None, "interpreter": True,
                  "note": "interpreter mode (TRITON_INTERPRET=1): kernels run on the CPU, slowly"}
    elif not cuda["available"]:
        triton = {"available": False, "interpreter": False,
                  "reason": f"no GPU ({cuda['reason']}); TRITON_INTERPRET=1 runs the kernels on the CPU"}
    else:
        triton = {"available": True, "reason": None, "interpreter": False}

    return {
        "versions": versions,
        "torch_build": torch_build,
        "platform": f"{platform.system()} {platform.machine()}, {sys.implementation.name}",
        "native": {"loaded": native.loaded, "reason": native.reason or None, "built_for": native.built_for or None,
                   "cuda_kernels": native.cuda_kernels},
        "cuda": cuda,
        "triton": triton,
        "auto": {"cpu": _auto_backend("cpu"), "cuda": _auto_backend("cuda")},
    }


def format_info(info: dict) -> str:
    """The text ``pyfacex info`` prints for the dict of :func:`collect_info`."""
    versions = dict(info["versions"])
    lines = ["versions:"]
    width = max(len(name) for name in versions)
    for name, version in versions.items():
        suffix = f" ({info['torch_build']})" if name == "torch" and version != NOT_INSTALLED else ""
        lines.append(f"  {name:<{width}}  {version}{suffix}")
    native, cuda, triton = info["native"], info["cuda"], info["triton"]
    lines.append("backends:")
    lines.append("  native extension: " + ("loaded" + (f" (built for torch {native['built_for']})"
                                                         if native["built_for"] else "")
                                           if native["loaded"] else f"not loaded: {native['reason']}"))
    lines.append("  CUDA kernels:     " + ("compiled in" if native["cuda_kernels"] else
                                           "not compiled in" if native["loaded"] else
                                           "no (native extension not loaded)"))
    lines.append("  CUDA device:      " + (f"{cuda['device_count']}: {', '.join(cuda['devices'])}" if cuda["available"]
                                           else f"none ({cuda['reason']})"))
    lines.append("  Triton:           " + ("available" + (f" - {triton['note']}" if triton.get("note") else "")
                                           if triton["available"] else f"unavailable: {triton['reason']}"))
    for device in ("cpu", "cuda"):
        auto = info["auto"][device]
        by_backend: dict[str, list[str]] = {}
        for op, backend in auto["ops"].items():
            by_backend.setdefault(backend, []).append(op)
        picked = (f"{next(iter(by_backend))} (every op)" if len(by_backend) == 1
                  else "; ".join(f"{backend} ({', '.join(ops)})" for backend, ops in by_backend.items()))
        why = f" [native: {auto['native_unavailable']}]" if auto["native_unavailable"] else ""
        lines.append(f"  auto on {device.upper() + ':':<9} {picked}{why}")
    return "\n".join(lines)


def _run(args) -> int:
    info = collect_info()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
