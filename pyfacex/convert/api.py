"""Import the weights of other projects as pyfacex models, and write them as model files."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ..train.checkpoint import MODEL_FORMAT, atomic_save
from .adaface import CHANNEL_ORDER as ADAFACE_CHANNEL_ORDER
from .adaface import adaface_to_pyfacex, reverse_stem_channels
from .architecture import build_loaded, check_architecture, infer_layout, model_kwargs
from .onnx_check import CHECK_COSINE, onnxruntime_agreement
from .onnx_graph import OnnxBackbone, read_onnx_backbone
from .reading import NotATorchFile, find_backbone, load_foreign_torch

__all__ = ["SOURCES", "ConversionReport", "detect_source", "import_model", "convert"]

#: what ``source`` may name: arcface_torch ``.pth``, insightface ONNX, AdaFace ``.ckpt``
SOURCES = ("insightface", "onnx", "adaface")


@dataclass
class _Read:
    """A source read into pyfacex's naming, before the architecture is chosen."""

    state: dict
    source: str
    provenance: dict
    variant: str = "arcface"
    input_size: int | None = None
    onnx: OnnxBackbone | None = None


@dataclass(frozen=True)
class ConversionReport:
    """What :func:`convert` wrote and checked.

    Attributes:
        path: the model file; info: its fields other than the state_dict (``name``, ``kwargs``,
            ``image_size``, ``channel_order``, ``converted_from``).
        tensors: entries of the state_dict.
        check: the agreement with the original (ONNX through onnxruntime: ``min_cosine``,
            ``max_abs_difference``, ``images``), or None when not checked.
    """

    path: Path
    info: dict
    tensors: int
    check: dict | None = field(default=None)


def _check_source(source: str) -> str:
    if source != "auto" and source not in SOURCES:
        raise ValueError(f"--from must be auto or one of {', '.join(SOURCES)}, got {source!r}")
    return source


def _read_torch(path: Path, naming: str | None, obj=None) -> _Read:
    obj = load_foreign_torch(path) if obj is None else obj
    found = find_backbone(obj, path, naming)
    provenance = {"source": found.naming, "file": path.name, "prefix": found.prefix,
                  "container": found.container, "ignored_entries": found.ignored}
    what = f"SRC {path}"
    if found.naming == "insightface":
        return _Read(found.state, "insightface", {**provenance, "channel_order": "RGB"})
    state = reverse_stem_channels(adaface_to_pyfacex(found.state, what), what)
    provenance.update(channel_order=ADAFACE_CHANNEL_ORDER, stem_channels_reversed=True)
    return _Read(state, "adaface", provenance, variant="adaface")


def _read_onnx(path: Path) -> _Read:
    graph = read_onnx_backbone(path)
    provenance = {"source": "onnx", "file": path.name, "channel_order": "RGB", "input_name": graph.input_name,
                  "input": "pixels" if graph.input_pixels else "normalised", "input_scale": graph.input_scale}
    return _Read(graph.state, "onnx", provenance, input_size=graph.input_size, onnx=graph)


def _read(path: Path, source: str) -> _Read:
    if not path.is_file():
        raise FileNotFoundError(f"SRC: {path} does not exist")
    if source == "onnx" or (source == "auto" and path.suffix.lower() == ".onnx"):
        return _read_onnx(path)
    if source != "auto":
        return _read_torch(path, source)
    try:
        obj = load_foreign_torch(path)
    except NotATorchFile as torch_error:
        try:   # an ONNX model without the .onnx suffix
            return _read_onnx(path)
        except (ValueError, ModuleNotFoundError) as onnx_error:
            raise ValueError(f"SRC: unknown source type: {path} is neither a torch file (insightface .pth, AdaFace "
                             f".ckpt) nor an ONNX model.\n  as torch: {torch_error}\n  as ONNX: {onnx_error}") from None
    return _read_torch(path, None, obj)


def detect_source(path: str | os.PathLike) -> str:
    """Which of :data:`SOURCES` the file at ``path`` is (by its content; ``.onnx`` files are ONNX).
    Raises ValueError when it is none of them, saying what the file holds."""
    return _read(Path(path), "auto").source


def import_model(src: str | os.PathLike, arch: str, *, source: str = "auto",
                 device: str = "cpu") -> tuple[nn.Module, dict]:
    """The weights at ``src`` as a pyfacex model ``arch`` (``iresnet18`` … ``iresnet200``, ``irse50``),
    in eval mode on ``device``, and the model-file fields (``format``, ``name``, ``kwargs``,
    ``image_size``, ``channel_order``, ``converted_from``), as :func:`pyfacex.train.checkpoint.load_model`
    returns them for a model file: the same (model, info) without converting first.

    ``source``: ``auto`` (from the content) or one of :data:`SOURCES`. The model reads RGB faces
    (x/255 − 0.5)/0.5 like every pyfacex model, whatever the source read (AdaFace: BGR, the stem's
    channels are reversed; mxnet-era ONNX: raw pixels, the scale is folded into the stem).

    Raises ValueError naming what is wrong: an unknown source type, a file without an iResNet,
    blocks per stage or squeeze-excitation other than ``arch``'s, missing, unexpected or
    differently shaped tensors.
    """
    model, info, _ = _import(Path(src), arch, source)
    return model.to(device), info


def _import(path: Path, arch: str, source: str) -> tuple[nn.Module, dict, _Read]:
    read = _read(path, _check_source(source))
    what = f"SRC {path}"
    layout = infer_layout(read.state, what, read.input_size)
    check_architecture(layout, arch, what)
    kwargs = model_kwargs(layout, read.variant)
    model = build_loaded(arch, kwargs, read.state, f"the weights of {what}")
    info = {"format": MODEL_FORMAT, "name": arch, "kwargs": kwargs, "image_size": layout.input_size,
            "channel_order": "RGB", "converted_from": read.provenance}
    return model, info, read


def convert(src: str | os.PathLike, arch: str, out: str | os.PathLike, *, source: str = "auto",
            check: bool = True, overwrite: bool = False) -> ConversionReport:
    """Write the weights at ``src`` as a pyfacex model file ``out`` (see :func:`import_model`).

    With ``check``, an ONNX source is compared with the converted model through onnxruntime on
    random faces and the file is written only when every cosine is at least :data:`CHECK_COSINE`.
    An existing ``out`` is replaced only with ``overwrite`` (FileExistsError otherwise).
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"--out: {out} exists (pass --overwrite to replace it)")
    model, info, read = _import(Path(src), arch, source)
    agreement = None
    if check and read.onnx is not None:
        agreement = onnxruntime_agreement(model, src, input_size=info["image_size"],
                                          input_pixels=read.onnx.input_pixels, batch=read.onnx.batch)
        if not agreement["min_cosine"] >= CHECK_COSINE:
            raise ValueError(f"SRC {src}: the converted model disagrees with the ONNX original (cosine "
                             f"{agreement['min_cosine']:.6f} < {CHECK_COSINE}); nothing written")
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    atomic_save({**info, "state_dict": state}, out)
    return ConversionReport(out, info, len(state), agreement)
