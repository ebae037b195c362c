"""A converted ONNX model checked against the original graph, run by onnxruntime."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["CHECK_COSINE", "onnxruntime_agreement"]

#: the least cosine between a converted model's features and the original's that a conversion accepts
CHECK_COSINE = 0.9999


def onnxruntime_agreement(model: nn.Module, path: str | os.PathLike, *, input_size: int, input_pixels: bool = False,
                          batch: int | None = None, images: int = 4, seed: int = 0) -> dict[str, float]:
    """Features of ``model`` and of the ONNX graph at ``path`` (onnxruntime, CPU) on the same faces.

    ``images`` random faces (B, 3, input_size, input_size) in pyfacex's input range [-1, 1] go to
    ``model`` as they are and to the graph as it expects them: as pixels 127.5·u + 127.5 when
    ``input_pixels`` (a graph that normalises itself), in chunks of ``batch`` when its batch size is
    static.

    Returns ``{"min_cosine", "max_abs_difference", "images"}`` over the rows (the cosine in float64).
    Raises ModuleNotFoundError (saying how to install it) without onnxruntime.
    """
    try:
        import onnxruntime
    except ModuleNotFoundError:
        raise ModuleNotFoundError("checking against the ONNX original needs onnxruntime: "
                                  "pip install pyfacex[onnx] (or convert with --no-check)") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())  # follows OMP_NUM_THREADS, as torch does
    options.log_severity_level = 3  # errors only: exporters leave static output shapes that a larger batch "violates"
    session = onnxruntime.InferenceSession(str(Path(path)), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    if batch:  # a static batch takes whole chunks only
        images = -(-images // batch) * batch
    faces = torch.rand(images, 3, input_size, input_size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    fed = (faces * 127.5 + 127.5 if input_pixels else faces).numpy()
    step = batch or images
    theirs = np.concatenate([session.run(None, {name: fed[i:i + step]})[0] for i in range(0, images, step)])
    device = next(model.parameters()).device
    with torch.no_grad():
        ours = model.eval()(faces.to(device)).cpu().double().numpy()
    theirs = theirs.astype(np.float64).reshape(images, -1)
    if theirs.shape != ours.shape:
        raise ValueError(f"the ONNX model outputs {theirs.shape[1]} features, the converted one {ours.shape[1]}")
    cosine = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    return {"min_cosine": float(cosine.min()), "max_abs_difference": float(np.abs(ours - theirs).max()),
            "images": images}
