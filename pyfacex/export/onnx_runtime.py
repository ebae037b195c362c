"""An ONNX face-recognition file as a pyfacex embedder, run by onnxruntime.

:func:`load_onnx_embedder` has :func:`pyfacex.train.checkpoint.load_embedder`'s interface: it
returns a module mapping faces (B, 3, S, S) in [-1, 1] (pyfacex's ``(x/255 − 0.5)/0.5``) to (B, d)
embeddings, and the model's fields (``name``, ``kwargs``, ``image_size``, ...). It reads files
:func:`pyfacex.export.export_model` wrote and insightface's own recognition models alike: the input
name, S and the input normalisation come from the file, the latter by ``ArcFaceONNX``'s rule
(:func:`~.onnx_file.input_convention`), and a file with a fixed batch is fed that many faces a call.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .metadata import read_description
from .onnx_file import input_convention

__all__ = ["OnnxEmbedder", "load_onnx_embedder"]


class OnnxEmbedder(nn.Module):
    """An onnxruntime session behind an ``nn.Module`` embedder (no parameters, no training mode).

    Args:
        session: an ``onnxruntime.InferenceSession`` of a recognition model (one input
            (N, 3, S, S), first output (N, d)).
        mean, std: the normalisation the graph expects outside it (x − mean)/std on 0-255 pixels:
            (127.5, 127.5) for pyfacex's files, (0, 1) for mxnet-converted models that normalise inside.
        embedding_size: d, the size of an empty batch's result.

    Shapes: faces (B, 3, S, S) float in [-1, 1], any device → float32 (B, d) on the faces' device.
    """

    def __init__(self, session, mean: float, std: float, embedding_size: int):
        super().__init__()
        self.session = session
        self.mean, self.std = float(mean), float(std)
        self.embedding_size = int(embedding_size)
        described = session.get_inputs()[0]
        self.input_name, self.output_name = described.name, session.get_outputs()[0].name
        self.image_size = tuple(described.shape[2:4])
        self.fixed_batch = described.shape[0] if isinstance(described.shape[0], int) else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3 \
                or not images.is_floating_point():
            got = f"{tuple(images.shape)} {images.dtype}" if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be float faces (B, 3, H, W) in [-1, 1], got {got}")
        if tuple(images.shape[2:]) != self.image_size:
            raise ValueError(f"images must be {self.image_size[0]}x{self.image_size[1]} (the ONNX file's input), "
                             f"got {images.shape[2]}x{images.shape[3]}")
        if images.shape[0] == 0:
            return torch.zeros(0, self.embedding_size, device=images.device)
        x = images.detach().float().cpu().numpy()
        if (self.mean, self.std) != (127.5, 127.5):  # back to pixels, then the graph's own convention
            x = (x * 127.5 + 127.5 - self.mean) / self.std
        step = self.fixed_batch or len(x)
        outputs = [self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(x[i:i + step])})[0]
                   for i in range(0, len(x), step)]
        return torch.from_numpy(np.concatenate(outputs).astype(np.float32, copy=False)).to(images.device)


def _providers(device: str | torch.device) -> list[str]:
    import onnxruntime

    if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def load_onnx_embedder(file: str | os.PathLike | bytes, device: str | torch.device = "cpu",
                       threads: int = 0) -> tuple[OnnxEmbedder, dict]:
    """An ONNX recognition file as (:class:`OnnxEmbedder`, the model's fields), as
    :func:`~pyfacex.train.checkpoint.load_embedder` returns a model file's.

    Args:
        file: an ``.onnx`` file (path, or its bytes): written by :func:`pyfacex.export.export_model`,
            or an insightface recognition model (input (N or 1, 3, S, S)).
        device: ``cuda`` runs on onnxruntime's CUDA provider when it has one, else on the CPU; the
            embeddings come back on the faces' device either way.
        threads: onnxruntime's intra-op threads (0: its default, one per core).

    Returns:
        the embedder and a dict with ``name``, ``kwargs``, ``image_size`` (S), ``embedding_size``,
        ``input_mean``/``input_std`` (the graph's convention) and ``format`` ``"onnx"``; a pyfacex
        file adds every field of the model file it was exported from.
    Raises FileNotFoundError for a missing path; ValueError for a file that is not a single-input
    square-image ONNX model, or when onnx/onnxruntime are missing.
    """
    name = "onnx" if isinstance(file, bytes) else Path(file).stem
    if not isinstance(file, bytes) and not Path(file).is_file():
        raise FileNotFoundError(f"{file} does not exist")
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise ValueError("loading an ONNX embedder needs onnx and onnxruntime: pip install 'pyfacex[onnx]'") from error
    try:
        model = onnx.load_from_string(file) if isinstance(file, bytes) else onnx.load(str(file))
    except Exception as error:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise ValueError(f"{name} is not an ONNX model ({type(error).__name__}: {error})") from error
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=_providers(device))
    except Exception as error:  # noqa: BLE001 - onnxruntime's own exception types
        raise ValueError(f"onnxruntime cannot run {name}: {error}") from error
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = inputs[0].shape if len(inputs) == 1 else None
    if shape is None or len(shape) != 4 or shape[1] != 3 or not all(isinstance(s, int) for s in shape[2:]) \
            or shape[2] != shape[3]:
        described = [(i.name, i.shape) for i in inputs]
        raise ValueError(f"{name} is not a face-recognition model: expected one input (N, 3, S, S) with a fixed S, "
                         f"got {described}")
    mean, std = input_convention(model)
    info = read_description({p.key: p.value for p in model.metadata_props})
    if info is None:
        info = {"name": name, "kwargs": {}}
    size = outputs[0].shape[1] if len(outputs[0].shape) == 2 and isinstance(outputs[0].shape[1], int) else None
    if size is None:  # a symbolic width: learn d from blank faces
        batch = shape[0] if isinstance(shape[0], int) else 1
        probe = np.zeros((batch, 3, shape[2], shape[3]), dtype=np.float32)
        size = session.run([outputs[0].name], {inputs[0].name: probe})[0].reshape(batch, -1).shape[1]
    info.update(image_size=shape[2], embedding_size=int(size), input_mean=mean, input_std=std, format="onnx")
    return OnnxEmbedder(session, mean, std, size), info
