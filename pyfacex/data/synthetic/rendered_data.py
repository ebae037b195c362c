"""A synthetic world's training set and benchmark protocols rendered into one folder, once per settings.

``pyfacex demo`` and ``pyfacex reproduce`` describe the data they need as plain settings (the world's
keyword arguments, the training set's size, the protocol writers by name with their arguments);
:func:`render_data` renders them and stamps the folder with the settings, so that a later call with
the same settings returns at once, and :func:`settings_key` names a cache folder after them.

The settings are a JSON-ready mapping:

- ``"world"``: keyword arguments of :class:`SyntheticFaceWorld` (``seed``, ``size``, ``framing``,
  and any option the world takes), its ``"nuisance"`` a mapping of :class:`Nuisance` knobs;
- ``"train"``: keyword arguments of :func:`write_training_set` after the world and the folder
  (``num_identities``, ``per_identity``, ``frames_per_video``, ...); RecordIO unless ``formats`` says;
- ``"protocols"``: protocol folder name -> ``[writer name, keyword arguments]`` (a name of
  :data:`WRITERS`; the arguments after the world and the folder, ``seed`` included).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from . import protocols as protocol_writers
from .export import write_training_set
from .nuisance import Nuisance
from .world import SyntheticFaceWorld

__all__ = ["STAMP", "WRITERS", "settings_key", "build_world", "check_settings", "render_data"]

STAMP = "settings.json"
"""The file in a rendered folder that holds the settings it was rendered from."""

WRITERS = tuple(name for name in protocol_writers.__all__ if name.startswith("write_"))
"""Names of the protocol writers of :mod:`pyfacex.data.synthetic.protocols` a setting may name."""

def settings_key(settings: Mapping) -> str:
    """A 16-hex-digit digest of ``settings`` (key order does not matter): the name of their cache folder."""
    text = json.dumps(settings, sort_keys=True, default=list)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def build_world(world: Mapping) -> SyntheticFaceWorld:
    """The :class:`SyntheticFaceWorld` of ``settings["world"]`` (its ``nuisance`` as :class:`Nuisance` knobs).

    Raises:
        ValueError naming ``world`` or ``world.nuisance`` and the argument the world does not take.
    """
    options = dict(world)
    knobs = options.pop("nuisance", {}) or {}
    try:
        nuisance = Nuisance(**knobs)
    except (TypeError, ValueError) as error:
        raise ValueError(f"world.nuisance: {error} (knobs: {', '.join(Nuisance.__dataclass_fields__)})") from None
    try:
        return SyntheticFaceWorld(nuisance=nuisance, **options)
    except (TypeError, ValueError) as error:
        raise ValueError(f"world: {error}") from None


def _check_arguments(where: str, function, kwargs: Mapping, leading: int) -> None:
    """Raise ValueError naming ``where`` when ``function`` takes no such keyword arguments (``progress``
    is the caller's, not a setting)."""
    if "progress" in kwargs:
        raise ValueError(f"{where}: 'progress' is no setting (it only shows progress bars)")
    try:
        inspect.signature(function).bind(*([None] * leading), **kwargs)
    except TypeError as error:
        raise ValueError(f"{where}: {error} ({function.__name__} takes "
                         f"{', '.join(list(inspect.signature(function).parameters)[leading:])})") from None


def check_settings(settings: Mapping) -> SyntheticFaceWorld:
    """Check ``settings`` without rendering anything; returns the world.

    Raises:
        ValueError naming the key (``world``, ``train``, ``protocols.<name>``) of a malformed setting.
    """
    for key in ("world", "train", "protocols"):
        if not isinstance(settings.get(key), Mapping):
            raise ValueError(f"{key}: expected a mapping, got {type(settings.get(key)).__name__}")
    world = build_world(settings["world"])
    _check_arguments("train", write_training_set, settings["train"], 2)
    for name, entry in settings["protocols"].items():
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[1], Mapping)):
            raise ValueError(f"protocols.{name}: expected [writer name, keyword arguments], got {entry!r}")
        writer, kwargs = entry
        if writer not in WRITERS:
            raise ValueError(f"protocols.{name}: {writer!r} is no protocol writer; expected one of "
                             f"{', '.join(WRITERS)}")
        _check_arguments(f"protocols.{name}", getattr(protocol_writers, writer), kwargs, 2)
    return world


def render_data(root: str | os.PathLike, settings: Mapping, progress: bool = True) -> Path:
    """Render ``settings`` (module docstring) into ``root``: ``root/train`` and ``root/protocols/<name>``.

    Nothing is rendered when ``root`` already holds the data of the same settings. The folder is
    built beside ``root`` and renamed into place when complete, so an interrupted rendering leaves no
    half-written ``root`` and two processes rendering the same settings do not mix their files.

    Returns:
        ``Path(root)``.
    Raises:
        ValueError as :func:`check_settings`.
    """
    root = Path(root)
    wanted = json.dumps(settings, sort_keys=True, indent=1, default=list)
    stamp = root / STAMP
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == wanted:
        return root
    world = check_settings(settings)
    root.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        train = {"formats": ("record",), **settings["train"]}
        write_training_set(world, partial / "train", progress=progress, **train)
        for name, (writer, kwargs) in settings["protocols"].items():
            getattr(protocol_writers, writer)(world, partial / "protocols" / name, progress=progress, **kwargs)
        (partial / STAMP).write_text(wanted, encoding="utf-8")
        if stamp.is_file() and stamp.read_text(encoding="utf-8") == wanted:
            return root   # another process finished the same settings first
        if root.exists():
            shutil.rmtree(root)
        partial.rename(root)
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    return root
