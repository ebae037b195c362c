"""``export_model``: a pyfacex model file's embedder as an ONNX, TorchScript or exported-program file.

The steps, each in its own module: the embedder in traceable form (:mod:`.embedder`), traced with
pyfacex's ops on their reference composition and checked to hold ATen operators only
(:mod:`.graph`), written in the format (:mod:`.onnx_file`, :mod:`.torch_files`) with the model's
description (:mod:`.metadata`), then loaded back and compared with the eager model on random faces
before the file is written (atomically), so no file that disagrees with its model is ever left.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .embedder import exportable_embedder
from .graph import ExportError, example_faces, export_program, trace_torchscript
from .metadata import describe
from .onnx_file import DEFAULT_OPSET, need_onnx, onnx_bytes, onnx_opset
from .torch_files import exported_program_bytes, load_exported_program, load_torchscript, torchscript_bytes

__all__ = ["FORMATS", "SUFFIXES", "MIN_COSINE", "Exported", "export_embedder", "export_model", "load_exported"]

FORMATS = ("onnx", "torchscript", "exported-program")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts", "exported-program": ".pt2"}
MIN_COSINE = 0.9999  # per face, exported file against the eager model
_VERIFY_BATCH = 3  # not the trace's 2: a batch size frozen into a graph fails the check


class Exported(NamedTuple):
    """What :func:`export_model` wrote: ``path``, ``format``, input ``image_size`` S, output
    ``embedding_size`` d, ``min_cosine``, the lowest cosine between the file's and the eager
    model's embeddings of random faces (None when not verified: ONNX without onnxruntime), and the
    file's ONNX ``opset`` (None for the other formats; the exporter may keep 18 when asked for 17
    and its version conversion fails)."""

    path: Path
    format: str
    image_size: int
    embedding_size: int
    min_cosine: float | None
    opset: int | None = None


def _check_format(format: str) -> None:
    if format not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {format!r}")


def load_exported(file: str | os.PathLike | bytes, format: str, device: str | torch.device = "cpu",
                  threads: int = 0) -> tuple[nn.Module, dict]:
    """An exported embedder file (path or bytes) in ``format`` as (module, the model's fields), the
    interface of :func:`~pyfacex.train.checkpoint.load_embedder`. ``threads``: onnxruntime's (ONNX only)."""
    _check_format(format)
    if format == "onnx":
        from .onnx_runtime import load_onnx_embedder

        return load_onnx_embedder(file, device, threads=threads)
    if format == "torchscript":
        return load_torchscript(file, device)
    return load_exported_program(file, device)


def _can_verify(format: str) -> bool:
    import importlib.util

    return format != "onnx" or importlib.util.find_spec("onnxruntime") is not None


def export_embedder(embedder: nn.Module, out: str | os.PathLike, format: str, image_size: int, *,
                    metadata: dict[str, str] | None = None, opset: int = DEFAULT_OPSET,
                    reference: tuple[torch.Tensor, torch.Tensor] | None = None, verify: bool = True) -> Exported:
    """Write ``embedder`` (faces (N, 3, S, S) in [-1, 1] → (N, d); see
    :func:`~.embedder.exportable_embedder`) to ``out`` in ``format``.

    Args:
        metadata: string properties to store (:func:`~.metadata.describe`); default: the image and
            embedding sizes only.
        opset: ONNX opset (>= 17).
        reference: (faces, expected embeddings) to verify the file against; default: ``embedder``
            itself on random faces (batch 3).
        verify: load the file back and require a cosine >= :data:`MIN_COSINE` on every face (ONNX:
            when onnxruntime is installed) before writing it.

    Raises ExportError (a ValueError) when the embedder cannot be traced, calls an operator outside
    ATen, or the file disagrees with it; ValueError for a bad ``format``/``opset``.
    """
    _check_format(format)
    if not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if format == "onnx":
        need_onnx()
    embedder = embedder.eval()
    if reference is None:
        faces = example_faces(image_size, _VERIFY_BATCH)
        with torch.no_grad():
            reference = (faces, embedder(faces))
    faces, expected = reference
    if metadata is None:
        metadata = describe({"image_size": image_size}, expected.shape[1])
    if format == "torchscript":
        data = torchscript_bytes(trace_torchscript(embedder, image_size), metadata)
    else:
        program = export_program(embedder, image_size)
        data = onnx_bytes(program, opset, metadata) if format == "onnx" else exported_program_bytes(program, metadata)
    min_cosine = None
    if verify and _can_verify(format):
        module, _ = load_exported(data, format, threads=1)
        with torch.no_grad():
            got = module(faces)
        if got.shape != expected.shape:
            raise ExportError(f"the {format} file returns embeddings of shape {tuple(got.shape)} for "
                              f"{tuple(faces.shape)} faces, the model {tuple(expected.shape)}")
        min_cosine = float(F.cosine_similarity(got.double(), expected.double(), dim=1).min())
        if not min_cosine >= MIN_COSINE:
            raise ExportError(f"the {format} file disagrees with the model: cosine {min_cosine:.6f} < {MIN_COSINE} "
                              f"on random faces; not written")
    from ..train.checkpoint import atomic_write

    path = atomic_write(out, lambda file: file.write(data))
    return Exported(path, format, image_size, int(expected.shape[1]), min_cosine,
                    onnx_opset(data) if format == "onnx" else None)


def _load_model(path: Path) -> tuple[nn.Module, dict]:
    from ..train.checkpoint import UnreadableFileError, load_model

    if not path.is_file():
        raise FileNotFoundError(f"MODEL: {path} does not exist (expected a pyfacex model file written by training)")
    try:
        return load_model(path)
    except UnreadableFileError as error:  # truncated, damaged, or no torch file at all
        raise ValueError(f"MODEL: {path} is not a pyfacex model file: it cannot be read {error.detail}") from error


def export_model(model: str | os.PathLike, out: str | os.PathLike, format: str = "onnx", *,
                 opset: int = DEFAULT_OPSET, verify: bool = True) -> Exported:
    """Export the embedder of a pyfacex model file (:func:`~pyfacex.train.checkpoint.save_model`).

    The file maps faces ``data`` float32 (N, 3, S, S) — RGB, (x − 127.5)/127.5, S the model file's
    ``image_size``, N dynamic — to (N, d) embeddings, not normalised, as
    :func:`~pyfacex.train.checkpoint.load_embedder`'s module does (LFENet: each image a set of one).
    Formats (:data:`FORMATS`): ``onnx`` (opset ``opset``, insightface's ``ArcFaceONNX`` runs it),
    ``torchscript`` (``torch.jit.load``), ``exported-program`` (``torch.export.load``, ``.pt2``).
    Graphs compute in float32 and hold ATen operators only (pyfacex's ops through their reference).

    Args:
        model: the model file.
        out: the file to write (replaced atomically when it exists; never ``model`` itself).
        format: one of :data:`FORMATS`.
        opset: ONNX opset, >= 17.
        verify: compare the written file with the eager model (see :func:`export_embedder`).

    Returns:
        :class:`Exported`.
    Raises FileNotFoundError for a missing model; ValueError for a file that is not a model file, a
    model without an embedding (FAN), a bad format or opset; ExportError (a ValueError) when the
    embedder cannot be exported.
    """
    _check_format(format)
    model, out = Path(model), Path(out)
    if out.resolve() == model.resolve():
        raise ValueError(f"out: {out} is the model file itself; choose another path (e.g. "
                         f"{model.with_suffix(SUFFIXES[format])})")
    if format == "onnx":
        need_onnx()
    whole, info = _load_model(model)
    channel_order = info.get("channel_order", "RGB")
    embedder = exportable_embedder(whole, channel_order)
    from ..train.checkpoint import embedder_for

    # The expected embeddings come from the model as pyfacex runs it (autocast off, as exported):
    # for LFENet its set op on sets of one, which the exported single-image form must reproduce.
    eager = embedder_for(whole).eval()
    image_size = int(info["image_size"])
    faces = example_faces(image_size, _VERIFY_BATCH)
    with torch.no_grad():
        expected = eager(faces.flip(1) if channel_order == "BGR" else faces)
    metadata = describe(info, expected.shape[1])
    return export_embedder(embedder, out, format, image_size, metadata=metadata, opset=opset,
                           reference=(faces, expected), verify=verify)
