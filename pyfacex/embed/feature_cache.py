"""The feature cache of ``pyfacex eval``: one file per (model file, protocol, precision and device).

A cache file holds the memo of :class:`pyfacex.eval.wrappers.MemoizedEmbedder` for the image
embedder and for the set model: network outputs keyed by a hash of their inputs. It lives at
``CACHE_DIR/<sha256 of the model file, 16 digits>/<protocol>-<fp32|amp>-<cpu|cuda>.pt``
(``CACHE_DIR``: ``$XDG_CACHE_HOME/pyfacex/features``, ``~/.cache`` by default). A changed model file
has another hash, so it never reads an old entry; a changed image, alignment or batch size changes
the inputs, which miss and are computed. Delete the folder to reclaim the space.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch

from ..eval.summary import file_name
from ..train.checkpoint import UnreadableFileError, atomic_save, safe_load

__all__ = ["CACHE_FORMAT", "default_cache_dir", "feature_cache_file", "file_digest", "load_cache", "save_cache"]

CACHE_FORMAT = "pyfacex-feature-cache-1"
_ROLES = ("embedder", "set_model")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pyfacex/features`` (``~/.cache/pyfacex/features`` without the variable)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pyfacex" / "features"


def file_digest(path: str | os.PathLike, extra: str = "") -> str:
    """SHA-256 of the file's bytes followed by ``extra`` (e.g. how a peer's weights are read), as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            digest.update(block)
    digest.update(extra.encode())
    return digest.hexdigest()


def feature_cache_file(cache_dir: str | os.PathLike, model_digest: str, protocol: str, amp: bool,
                       device: str | torch.device) -> Path:
    """Where the features of ``protocol`` (its name) under this model, precision and device type live."""
    precision = "amp" if amp else "fp32"
    return Path(cache_dir) / model_digest[:16] / f"{file_name(protocol)}-{precision}-{torch.device(device).type}.pt"


def load_cache(path: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """The memos (``{"embedder": {...}, "set_model": {...}}``) stored at ``path``; empty ones when there is
    no file. A damaged or foreign file is ignored with a warning naming it (and rewritten on save)."""
    empty = {role: {} for role in _ROLES}
    path = Path(path)
    if not path.is_file():
        return empty
    try:
        document = safe_load(path)
    except UnreadableFileError as error:
        warnings.warn(f"{path}: the feature cache cannot be read {error.detail}; the features are computed again",
                      stacklevel=2)
        return empty
    if not isinstance(document, dict) or document.get("format") != CACHE_FORMAT:
        warnings.warn(f"{path}: not a {CACHE_FORMAT} file; the features are computed again", stacklevel=2)
        return empty
    return {role: dict(document.get(role, {})) for role in _ROLES}


def save_cache(path: str | os.PathLike, memos: dict[str, dict[str, torch.Tensor]]) -> Path:
    """Write ``memos`` (as :func:`load_cache` returns them) to ``path`` atomically."""
    return atomic_save({"format": CACHE_FORMAT, **{role: memos.get(role, {}) for role in _ROLES}}, path)
