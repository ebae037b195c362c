"""TorchScript and ``torch.export`` files of an embedder, and loading them back as embedders.

* ``torchscript`` (``.ts``): ``torch.jit.trace`` on the reference ops; loads with ``torch.jit.load``
  in Python or libtorch (C++), without pyfacex.
* ``exported-program`` (``.pt2``): ``torch.export`` with a dynamic batch (>= 1); loads with
  ``torch.export.load`` (then ``.module()``), the input of AOTInductor and ExecuTorch.

Both carry :mod:`.metadata`'s properties as the extra file ``pyfacex.json``, and both take faces
(N, 3, S, S) RGB in (x − 127.5)/127.5 and return (N, d) embeddings, not normalised. Both formats
hold code (a TorchScript program, a serialised graph): load only files you trust.

torch 2.13 marks TorchScript deprecated in favour of ``torch.export``; it stays the format libtorch
(C++) loads, so pyfacex writes it on request and keeps torch's deprecation notice out of the way.
"""
from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .metadata import EXTRA_FILE, read_description

__all__ = ["ExportedProgramEmbedder", "torchscript_bytes", "exported_program_bytes", "load_torchscript",
           "load_exported_program"]


def torchscript_bytes(module: torch.jit.ScriptModule, metadata: dict[str, str]) -> bytes:
    """The file of a traced embedder (:func:`~.graph.trace_torchscript`) with ``metadata``."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.save.* is deprecated", category=DeprecationWarning)
        torch.jit.save(module, buffer, _extra_files={EXTRA_FILE: json.dumps(metadata, sort_keys=True)})
    return buffer.getvalue()


def exported_program_bytes(program: torch.export.ExportedProgram, metadata: dict[str, str]) -> bytes:
    """The ``.pt2`` file of an exported embedder (:func:`~.graph.export_program`) with ``metadata``."""
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={EXTRA_FILE: json.dumps(metadata, sort_keys=True)})
    return buffer.getvalue()


def _source(file: str | os.PathLike | bytes):
    """What torch's loaders take: a path as str, or bytes as a buffer."""
    return io.BytesIO(file) if isinstance(file, bytes) else str(file)


def _info(extra: str, name: str, image_size: int | None) -> dict:
    info = read_description(json.loads(extra)) if extra else None
    return info if info is not None else {"name": name, "kwargs": {}, "image_size": image_size}


class ExportedProgramEmbedder(nn.Module):
    """The module of a loaded exported program, as an embedder ``pyfacex eval`` can drive.

    An exported graph was captured in eval mode and has no training behaviour, and its module
    refuses ``train()``/``eval()``: this wrapper records the mode and leaves the graph alone. The
    graph's batch is >= 1; an empty batch returns (0, d) without running it.

    Shapes: faces (N, 3, S, S) float32 in [-1, 1] → (N, d).
    """

    def __init__(self, graph: nn.Module, embedding_size: int):
        super().__init__()
        self.graph = graph
        self.embedding_size = int(embedding_size)

    def train(self, mode: bool = True) -> ExportedProgramEmbedder:
        """Record ``mode`` only (see the class docstring)."""
        self.training = mode
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if isinstance(images, torch.Tensor) and images.dim() == 4 and images.shape[0] == 0:
            return images.new_zeros(0, self.embedding_size)
        return self.graph(images)


def load_torchscript(file: str | os.PathLike | bytes, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """A TorchScript embedder (a path or the file's bytes) as (module in eval mode on ``device``,
    the model's fields as :func:`~pyfacex.train.checkpoint.load_embedder` gives them)."""
    extra = {EXTRA_FILE: ""}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=DeprecationWarning)
        module = torch.jit.load(_source(file), map_location=device, _extra_files=extra)
    name = Path(file).stem if not isinstance(file, bytes) else "torchscript"
    return module.eval(), _info(extra[EXTRA_FILE], name, None)


def load_exported_program(file: str | os.PathLike | bytes,
                          device: str | torch.device = "cpu") -> tuple[ExportedProgramEmbedder, dict]:
    """A ``.pt2`` embedder (a path or the file's bytes) as (:class:`ExportedProgramEmbedder` on
    ``device``, the model's fields)."""
    extra = {EXTRA_FILE: ""}
    program = torch.export.load(_source(file), extra_files=extra)
    example = program.example_inputs[0][0] if program.example_inputs else None
    info = _info(extra[EXTRA_FILE], Path(file).stem if not isinstance(file, bytes) else "exported-program",
                 None if example is None else example.shape[-1])
    graph = program.module()
    size = info.get("embedding_size")
    if size is None:  # a file from elsewhere: d from its own example
        with torch.no_grad():
            size = graph(example).shape[1] if example is not None else 0
    if torch.device(device).type != "cpu":
        graph = graph.to(device)
    return ExportedProgramEmbedder(graph, size), info
