"""What training writes to disk: the model file (for inference and ``pyfacex eval``) and the
training checkpoints (for an exact resume).

Every file is written atomically (temporary file in the same folder, fsync, rename) and read with
``torch.load(weights_only=True)``, so a checkpoint cannot run code and a crash mid-write leaves the
previous file intact.

Model file (``model.pt``, ``best_model.pt``): ``{"format", "name", "kwargs", "image_size",
"state_dict"}`` — the registry name (``pyfacex.models.list_models()``) or iResNet factory that
rebuilds the model with ``kwargs`` (plain data), and its weights.

Training checkpoint: a folder ``step_<n>/`` holding ``shared.pt`` (written by rank 0: the modules
and optimiser states every rank holds alike, schedulers, the grad scaler, the counters and data
position, the config) and ``rank<r>.pt`` (written by every rank: the modules only that rank holds,
e.g. its PartialFC class shard, their optimiser states, and its RNG states).
"""
from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from .reshard import reshard_parts

__all__ = ["atomic_save", "atomic_write", "safe_load", "build_model", "build_trained_model", "save_model", "load_model",
           "load_embedder", "embedder_for", "load_state_dict_checked", "load_weights", "load_model_weights",
           "save_checkpoint", "load_checkpoint", "latest_checkpoint", "resume_candidates", "mark_latest", "rng_state",
           "set_rng_state", "CheckpointError", "UnreadableFileError"]

MODEL_FORMAT = "pyfacex.model/1"
CHECKPOINT_PREFIX = "step_"


def atomic_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` through a temporary file in its folder, fsync'ed and renamed."""
    return atomic_write(path, lambda file: torch.save(obj, file))


def atomic_write(path: str | os.PathLike, write) -> Path:
    """``write(file)`` (a binary file object) into ``path`` through a temporary file in its folder,
    fsync'ed and renamed: readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


class UnreadableFileError(ValueError):
    """A torch file that cannot be read (truncated, damaged, not a torch file, or holding objects that are
    not safe to load); the message names the file, its size and torch's reason.

    Attributes:
        path: the file. detail: the reason without the path (``"(4 bytes; EOFError: ...)"``), for
            callers that name the file their own way.
    """

    def __init__(self, path: Path, error: BaseException):
        reason = (str(error).strip().splitlines() or [""])[0]
        self.path = path
        self.detail = (f"({path.stat().st_size} bytes; {type(error).__name__}: {reason}): a truncated or damaged "
                       f"file, or not a torch file")
        super().__init__(f"{path} cannot be read {self.detail}")


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be resumed from (a file missing or unreadable, a step
    disagreeing with its folder); the message names the file and why."""


def safe_load(path: str | os.PathLike, map_location="cpu", mmap: bool = False):
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never code; with
    ``mmap`` the tensors are memory-mapped, read from disk only where they are used.

    Raises:
        FileNotFoundError: no such file.
        UnreadableFileError: anything else torch.load fails on, as one error naming the file (torch's own
            is a zip-reader or unpickler traceback of many types that names no file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as error:  # noqa: BLE001 - damaged bytes fail the zip reader and unpickler in many ways
        raise UnreadableFileError(path, error) from error


def load_state_dict_checked(module: nn.Module, state: dict, what: str, strict: bool = True) -> None:
    """``module.load_state_dict(state)``; on a mismatch the error names the missing, unexpected and
    differently shaped keys (first few of each) and ``what`` was being loaded."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != own[k].shape]
    if not strict and own and state and not any(k in own for k in state):
        raise ValueError(f"{what} shares no key with {type(module).__name__} (it holds e.g. {next(iter(state))!r}, "
                         f"the module e.g. {next(iter(own))!r}): nothing would be loaded")
    if shapes or (strict and (missing or unexpected)):
        def few(keys):
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        parts = [f"{label} {len(keys)}: {few(keys)}" for label, keys in
                 (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)) if keys]
        raise ValueError(f"{what} does not match {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(state, strict=strict)


def load_weights(module: nn.Module, path: str | os.PathLike, strict: bool = True, what: str = "model.weights") -> None:
    """Load a weights file into ``module``: a pyfacex model file (its ``state_dict``) or a bare
    state_dict (e.g. insightface's ``backbone.pth``); mismatches are reported as
    :func:`load_state_dict_checked` does, naming ``what``."""
    state = safe_load(path)
    state = state["state_dict"] if isinstance(state, dict) and "state_dict" in state else state
    load_state_dict_checked(module, state, f"{what} {path}", strict=strict)


# ------------------------------------------------------------------ the model file

def build_model(name: str, kwargs: dict | None = None) -> nn.Module:
    """A registered model (``pyfacex.models.create_model``), an iResNet (``iresnet50``, ``irse50``, ...)
    or ``fan`` (:class:`pyfacex.backbones.FAN`, the landmark network). A keyword value
    ``{"embedder_of": {"name": ..., "kwargs": ...}}`` is replaced by the embedder of that model."""
    from ..backbones import iresnet
    from ..backbones.fan import FAN
    from ..models import create_model, list_models
    from ..models._backbone import BACKBONES

    # A sub-module given by model (e.g. the Face Aggregation Network's extractor) is stored as
    # {"embedder_of": {"name", "kwargs"}} and rebuilt here; its weights come with the state_dict.
    kwargs = {k: embedder_for(build_model(**v["embedder_of"])) if isinstance(v, dict) and "embedder_of" in v else v
              for k, v in (kwargs or {}).items()}
    if name in BACKBONES:
        return getattr(iresnet, name)(**kwargs)
    if name == "fan":
        return FAN(**kwargs)
    if name not in list_models():
        raise ValueError(f"model.name: {name!r} is neither a registered model ({', '.join(list_models())}), "
                         f"a backbone ({', '.join(BACKBONES)}) nor fan")
    return create_model(name, **kwargs)


def build_trained_model(config, kwargs: dict, cls: type = nn.Module, trainer: str = "") -> nn.Module:
    """The model a trainer trains: ``build_model(config.name, kwargs)`` (``config`` a
    :class:`~pyfacex.train.config.ModelConfig`; ``kwargs`` may hold modules), checked to be a ``cls``
    (the error names the ``trainer``), with ``config.weights`` loaded over it when given."""
    model = build_model(config.name, kwargs)
    if not isinstance(model, cls):
        raise ValueError(f"model.name: the {trainer} trainer trains a {cls.__name__}, {config.name!r} builds a "
                         f"{type(model).__name__}")
    load_model_weights(model, config)
    return model


def load_model_weights(model: nn.Module, config, default_prefix: str = "") -> None:
    """Load ``config.weights`` (a :class:`~pyfacex.train.config.ModelConfig`; nothing when empty) into
    the sub-module of ``model`` named by ``config.weights_prefix`` (``default_prefix`` when that is
    empty; ``""``: the whole model)."""
    if not config.weights:
        return
    prefix = config.weights_prefix or default_prefix
    try:
        target = model.get_submodule(prefix)
    except AttributeError:
        children = ", ".join(name for name, _ in model.named_children())
        raise ValueError(f"model.weights_prefix: {type(model).__name__} has no sub-module {prefix!r}; its "
                         f"top-level sub-modules are {children}") from None
    what = f"model.weights (into {prefix})" if prefix else "model.weights"
    load_weights(target, config.weights, config.strict, what)


def save_model(path: str | os.PathLike, model: nn.Module, *, name: str, kwargs: dict | None = None,
               image_size: int = 112) -> Path:
    """Write the model file: ``build_model(name, kwargs)`` rebuilds ``model``; ``image_size`` is the
    side of the (square) faces it expects."""
    document = {"format": MODEL_FORMAT, "name": name, "kwargs": dict(kwargs or {}), "image_size": int(image_size),
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    return atomic_save(document, path)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The model of a model file, in eval mode on ``device``, and the file's other fields."""
    document = safe_load(path)
    if not isinstance(document, dict) or document.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a pyfacex model file (format {MODEL_FORMAT}); training writes one as "
                         "OUTPUT/model.pt")
    model = build_model(document["name"], document["kwargs"])
    load_state_dict_checked(model, document["state_dict"], f"the weights of {path}")
    info = {k: v for k, v in document.items() if k != "state_dict"}
    return model.to(device).eval(), info


class _SingletonSets(nn.Module):
    """A set model (LFENet) as an image embedder: every image is a set of one. It starts in the model's
    mode, so that an evaluation restoring the wrapper's mode afterwards leaves the model as it was."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.training = model.training

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        offsets = torch.arange(images.shape[0] + 1, device=images.device)
        return self.model.embed(images, offsets)


def embedder_for(model: nn.Module) -> nn.Module:
    """The module mapping faces (B, 3, H, W) in [-1, 1] to embeddings (B, d) inside ``model``:
    the backbone of QAFace/VPL, the extractor of the Face Aggregation Network, LFENet with every
    image a set of one, and the model itself otherwise (iResNet, LGAF, FAN-Face)."""
    from ..backbones.fan import FAN
    from ..models.face_aggregation import FaceAggregation
    from ..models.lfenet import LFENet
    from ..models.qaface import QAFace

    if isinstance(model, QAFace):
        return model.backbone
    if isinstance(model, FaceAggregation):
        return model.extractor
    if isinstance(model, LFENet):
        return _SingletonSets(model)
    if isinstance(model, FAN):
        raise ValueError("a FAN predicts landmarks, it has no face embedding to evaluate")
    return model


def load_embedder(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The embedder (:func:`embedder_for`) of a model file, in eval mode, and the file's fields
    (``name``, ``kwargs``, ``image_size``)."""
    model, info = load_model(path, device)
    return embedder_for(model).eval(), info


# ------------------------------------------------------------------ training checkpoints

def rng_state() -> dict:
    """The RNG states a training step draws from: torch CPU, every CUDA device, Python's ``random``.
    (pyfacex's samplers and augmentations use their own seeded generators, numpy's global RNG none.)"""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(root: str | os.PathLike, step: int, *, rank: int, shared: dict | None, local: dict) -> Path:
    """Write ``root/step_<step>/{shared.pt (when given), rank<rank>.pt}``; returns the folder.

    Call on every rank (rank 0 with ``shared``), then :func:`mark_latest` on rank 0 after a barrier.
    """
    folder = Path(root) / f"{CHECKPOINT_PREFIX}{step:08d}"
    if shared is not None:
        atomic_save(shared, folder / "shared.pt")
    atomic_save(local, folder / f"rank{rank}.pt")
    return folder


def mark_latest(root: str | os.PathLike, folder: Path, keep: int) -> None:
    """Point ``root/latest`` at ``folder`` and delete all but the ``keep`` newest checkpoints."""
    root = Path(root)
    latest = root / "latest"
    temporary = root / ".latest.tmp"
    temporary.write_text(folder.name + "\n", encoding="utf-8")
    os.replace(temporary, latest)
    folders = sorted(p for p in root.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir())
    for old in folders[:-keep] if keep > 0 else []:
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The folder ``root/latest`` names, or None when there is no checkpoint yet."""
    latest = Path(root) / "latest"
    if not latest.is_file():
        return None
    folder = Path(root) / latest.read_text(encoding="utf-8").strip()
    return folder if folder.is_dir() else None


def resume_candidates(root: str | os.PathLike) -> list[Path]:
    """The checkpoint folders of ``root`` to resume from, newest first: the one ``latest`` names and the
    older ones (a folder newer than ``latest`` was being written when the run stopped). Without a
    ``latest`` (it was lost), every ``step_*`` folder."""
    folders = sorted((p for p in Path(root).glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir()), reverse=True)
    latest = latest_checkpoint(root)
    return [p for p in folders if latest is None or p.name <= latest.name]


def _load_part(path: Path, keys: tuple[str, ...], mmap: bool = False) -> dict:
    """One checkpoint part, checked to load and to hold ``keys`` (CheckpointError naming the file)."""
    if not path.is_file():
        saved = sorted(p.name for p in path.parent.glob("*.pt"))
        raise CheckpointError(f"{path.parent} has no {path.name} (it holds {', '.join(saved) or 'no .pt file'})")
    try:
        part = safe_load(path, mmap=mmap)
    except UnreadableFileError as error:
        raise CheckpointError(str(error)) from error
    missing = [key for key in keys if not isinstance(part, dict) or key not in part]
    if missing:
        raise CheckpointError(f"{path}: not a checkpoint part of pyfacex (no {', '.join(missing)})")
    return part


def load_checkpoint(folder: str | os.PathLike, rank: int, world_size: int) -> tuple[dict, dict]:
    """(shared, local) of a checkpoint folder for ``rank`` of ``world_size`` processes, checked: the files
    load and the step they hold is the folder's. A checkpoint written by another number of processes is
    re-cut for this one (:func:`~pyfacex.train.reshard.reshard_parts`: class shards, their optimiser
    state and the data position), reading every rank's file.

    Raises:
        CheckpointError: a file missing or unreadable, or a step that is not the folder's (names the file).
        ValueError: saved by another number of processes at a data position the new ones cannot share,
            or with per-rank state that is not a class shard (every checkpoint of the run is alike, so no
            fallback helps).
    """
    folder = Path(folder)
    shared_path = folder / "shared.pt"
    if not shared_path.is_file():
        raise CheckpointError(f"{folder} is not a training checkpoint: {shared_path.name} is missing")
    shared = _load_part(shared_path, ("step", "epoch", "batch_in_epoch", "world_size", "modules", "optimizers",
                                      "schedulers"))
    if folder.name.startswith(CHECKPOINT_PREFIX) and folder.name != f"{CHECKPOINT_PREFIX}{shared['step']:08d}":
        raise CheckpointError(f"{shared_path} holds step {shared['step']}, not the step of its folder {folder.name}")
    local_keys = ("modules", "optimizers", "rng")
    if shared["world_size"] != world_size:
        return reshard_parts(folder, shared, rank, world_size, lambda path: _load_part(path, local_keys, mmap=True))
    return shared, _load_part(folder / f"rank{rank}.pt", local_keys)
