"""Reading other projects' torch files safely, and finding the face backbone's tensors inside them.

Files are read with ``torch.load(weights_only=True)`` only: tensors and plain containers, never
code. Training checkpoints of other projects often carry metadata the restricted unpickler does not
admit (an ``argparse.Namespace`` of hyper-parameters, numpy scalars in a callback's state). Those
objects are never needed here, so each such global is bound to :class:`Inert`, a class that accepts
any arguments and any state and does nothing, and the file is read again, still with
``weights_only=True``: no function or class of the file's choosing is ever called. Objects the
restricted unpickler cannot rebuild even then (dict subclasses filled item by item) make an error
naming the global.

A backbone is found by its naming, under any prefix (``module.`` of DistributedDataParallel,
``model.`` of a PyTorch Lightning module, ...):

- ``insightface``: arcface_torch's iResNet, keys ``conv1.weight``, ``layer1.0.bn1.weight``, ...;
- ``adaface``: AdaFace's IR (``net.py``), keys ``input_layer.0.weight``, ``body.0.res_layer.0.weight``, ...

in the file's top-level dict or under ``state_dict`` (PyTorch Lightning, AdaFace's ``.ckpt``),
``state_dict_backbone`` (arcface_torch's ``checkpoint_gpu_<rank>.pt``), ``model`` or ``backbone``.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["Inert", "NotATorchFile", "BackboneTensors", "TORCH_NAMINGS", "load_foreign_torch", "find_backbone"]

#: naming → (key that marks the backbone's root, another key that must sit beside it)
TORCH_NAMINGS: dict[str, tuple[str, str]] = {
    "insightface": ("conv1.weight", "layer1.0.bn1.weight"),
    "adaface": ("input_layer.0.weight", "body.0.res_layer.0.weight"),
}
# where training scripts nest the model's state_dict in a checkpoint dict
_NESTED = ("state_dict", "state_dict_backbone", "model", "backbone")


class NotATorchFile(ValueError):
    """The file is not something ``torch.save`` wrote (so it may be another kind of weights file)."""


class Inert:
    """Stands in for any global of a checkpoint's metadata: built from anything, holds nothing.

    Bound (by name) to the globals ``torch.load(weights_only=True)`` refuses, so those objects come
    back as ``Inert`` instances instead of running the file's own classes or functions.
    """

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state) -> None:
        pass

    def __repr__(self) -> str:
        return "Inert()"


def load_foreign_torch(path: str | os.PathLike, what: str = "SRC"):
    """The object stored in a torch file (``torch.save``), read with ``weights_only=True``; metadata
    globals the restricted unpickler refuses come back as :class:`Inert` (see the module docstring).

    Raises FileNotFoundError for a missing file, :class:`NotATorchFile` for a file that is not a torch
    file and ValueError (naming ``what`` and the file) for one holding objects that cannot be read safely.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not zipfile.is_zipfile(path):   # torch.save writes zip archives; the legacy format is rare
            raise NotATorchFile(f"{what}: {path} is not a torch file (nor a legacy one that can be read safely: "
                                f"{str(error).splitlines()[0]})") from None
        refused = _unsafe_globals(path)
        if not refused:
            raise ValueError(f"{what}: {path} cannot be read safely (weights_only): {error}") from None
    except Exception as error:  # noqa: BLE001 - other bytes fail the unpickler in many ways (KeyError, EOFError, ...)
        raise NotATorchFile(f"{what}: {path} is not a torch file ({type(error).__name__}: {error})") from None
    with torch.serialization.safe_globals([(Inert, name) for name in refused]):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise ValueError(f"{what}: {path} holds objects that cannot be read safely (globals "
                             f"{', '.join(refused)}): {error}") from None


def _unsafe_globals(path: Path) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - legacy (non-zip) files cannot be scanned: nothing to bind then
        return []


@dataclass(frozen=True)
class BackboneTensors:
    """The backbone tensors found in a checkpoint.

    Attributes:
        naming: a key of :data:`TORCH_NAMINGS` (``insightface`` or ``adaface``).
        state: the backbone's entries with ``prefix`` removed, in the file's order.
        prefix: what preceded the backbone's own key names (``""``, ``"model."``, ``"module."`` ...).
        container: where the state_dict was in the file (``""`` = the top level, else its key).
        ignored: how many entries of that state_dict are outside the backbone (e.g. AdaFace's
            ``head.kernel``, a classifier).
    """

    naming: str
    state: dict
    prefix: str
    container: str
    ignored: int


def _roots(state: dict, naming: str) -> list[str]:
    """The prefixes under which ``state`` holds a backbone of ``naming``."""
    marker, companion = TORCH_NAMINGS[naming]
    return [key[: -len(marker)] for key in state
            if isinstance(key, str) and key.endswith(marker) and key[: -len(marker)] + companion in state]


def find_backbone(obj, path: str | os.PathLike, naming: str | None = None, what: str = "SRC") -> BackboneTensors:
    """The iResNet backbone stored in ``obj`` (what :func:`load_foreign_torch` read from ``path``):
    of ``naming`` (a key of :data:`TORCH_NAMINGS`), or of whichever naming is found when None.

    Raises ValueError naming ``what`` and ``path`` when no backbone is found (the error shows a few of
    the keys the file holds), or when several are, under different prefixes.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"{what}: {path} holds a {type(obj).__name__}, not a state_dict (a dict of tensors)")
    if isinstance(obj.get("format"), str) and obj["format"].startswith("pyfacex.model"):
        raise ValueError(f"{what}: {path} is already a pyfacex model file: use it as it is "
                         "(pyfacex eval MODEL ...), no conversion needed")
    namings = [naming] if naming else list(TORCH_NAMINGS)
    containers = [("", obj)] + [(key, obj[key]) for key in _NESTED if isinstance(obj.get(key), dict)]
    for container, state in containers:
        for name in namings:
            roots = sorted(set(_roots(state, name)), key=lambda root: (len(root), root))
            if len(roots) > 1:
                raise ValueError(f"{what}: {path} holds {len(roots)} {name} backbones (under "
                                 f"{', '.join(repr(r) for r in roots)}): which one to convert is ambiguous")
            if roots:
                prefix = roots[0]
                own = {key[len(prefix):]: value for key, value in state.items()
                       if isinstance(key, str) and key.startswith(prefix)}
                return BackboneTensors(name, own, prefix, container, len(state) - len(own))
    sample = next((state for _, state in reversed(containers) if state), obj)
    keys = ", ".join(repr(k) for k in list(sample)[:6]) or "nothing"
    wanted = " or ".join(f"{n} ({', '.join(TORCH_NAMINGS[n])})" for n in namings)
    raise ValueError(f"{what}: {path} holds no iResNet backbone of {wanted} naming; it holds e.g. {keys}")
