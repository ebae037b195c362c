"""Deployable files of a pyfacex embedder: ONNX, TorchScript and ``torch.export`` programs.

    export_model("model.pt", "model.onnx", "onnx")           # insightface's ArcFaceONNX runs it
    embedder, info = load_onnx_embedder("model.onnx")        # as train.checkpoint.load_embedder

Every file takes faces (N, 3, S, S) float32, RGB, (x − 127.5)/127.5 (input ``data`` in ONNX), N
dynamic, and returns (N, d) embeddings, not normalised. See :mod:`.api` for the steps.
"""
from .api import FORMATS, MIN_COSINE, SUFFIXES, Exported, export_embedder, export_model, load_exported
from .embedder import SingleImageLFENet, exportable_embedder
from .graph import ExportError
from .onnx_file import DEFAULT_OPSET, INPUT_NAME, MIN_OPSET, OUTPUT_NAME, input_convention
from .onnx_runtime import OnnxEmbedder, load_onnx_embedder
from .torch_files import ExportedProgramEmbedder

__all__ = ["FORMATS", "SUFFIXES", "MIN_COSINE", "DEFAULT_OPSET", "MIN_OPSET", "INPUT_NAME", "OUTPUT_NAME",
           "Exported", "ExportError", "ExportedProgramEmbedder", "OnnxEmbedder", "SingleImageLFENet",
           "export_embedder", "export_model", "exportable_embedder", "input_convention", "load_exported",
           "load_onnx_embedder"]
