"""ONNX files in insightface's recognition convention, so its ``ArcFaceONNX`` runs them unchanged.

What ``insightface.model_zoo.ArcFaceONNX`` reads from a file, and what :func:`onnx_model` makes true:

* one input, float (N, 3, S, S) with S static (its ``input_size`` is the input's last two dims) and N
  dynamic; named ``data``. The faces are RGB (it swaps OpenCV's BGR) normalised as (x − 127.5)/127.5,
  which pyfacex's embedders take already (``(x/255 − 0.5)/0.5`` is the same map);
* exactly one output, the (N, d) embedding (named ``embedding``), not normalised;
* the input normalisation is not in the file: insightface infers it from the names of the graph's
  first 8 nodes. A ``Sub``/``_minus`` name together with a ``Mul``/``_mul`` name there marks an
  mxnet-converted model that normalises inside (mean 0, std 1 outside); otherwise it applies 127.5 /
  127.5 itself. :func:`input_convention` is that rule; :func:`onnx_model` renames any of the first
  nodes whose name would trip it.

``pyfacex.*`` metadata properties record the model (name, kwargs, image size, embedding size,
normalisation, channel order) for :func:`pyfacex.export.load_onnx_embedder` and for people.
"""
from __future__ import annotations

import torch

from .graph import ExportError, quiet_torch

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "BATCH_AXIS", "DEFAULT_OPSET", "MIN_OPSET", "input_convention",
           "keep_insightface_normalization", "need_onnx", "onnx_bytes", "onnx_model", "onnx_opset"]

INPUT_NAME = "data"
OUTPUT_NAME = "embedding"
BATCH_AXIS = "batch"
DEFAULT_OPSET = 18  # the dynamo exporter's native opset; 17 goes through onnx's version converter
MIN_OPSET = 17
_NODES_READ = 8  # ArcFaceONNX looks at graph.node[:8]
_MXNET_SUB = ("Sub", "_minus")
_MXNET_MUL = ("Mul", "_mul")
_INSIGHTFACE_NORMALIZATION = (127.5, 127.5)


def need_onnx() -> None:
    """Raise ExportError naming the extra when onnx or onnxscript (the ONNX exporter's needs) is missing."""
    import importlib.util

    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"--format onnx needs {' and '.join(missing)}: pip install 'pyfacex[onnx]'")


def input_convention(model) -> tuple[float, float]:
    """(mean, std) that insightface's ``ArcFaceONNX`` applies before calling the ONNX ``model`` (a
    ``onnx.ModelProto``): (0, 1) when the first 8 node names carry both mxnet's subtraction and
    multiplication (the model normalises itself), else (127.5, 127.5)."""
    names = [node.name for node in model.graph.node[:_NODES_READ]]
    normalises_inside = any(n.startswith(_MXNET_SUB) for n in names) and any(n.startswith(_MXNET_MUL) for n in names)
    return (0.0, 1.0) if normalises_inside else _INSIGHTFACE_NORMALIZATION


def keep_insightface_normalization(model) -> None:
    """Rename the first nodes whose names would make ArcFaceONNX skip its (x − 127.5)/127.5."""
    if input_convention(model) == _INSIGHTFACE_NORMALIZATION:
        return
    for node in model.graph.node[:_NODES_READ]:
        if node.name.startswith(_MXNET_SUB + _MXNET_MUL):
            node.name = f"pyfacex_{node.name}"


def onnx_model(program: torch.export.ExportedProgram, opset: int = DEFAULT_OPSET,
               metadata: dict[str, str] | None = None):
    """The ``onnx.ModelProto`` of an exported embedder (:func:`~.graph.export_program`): input ``data``
    (batch, 3, S, S), output ``embedding`` (batch, d), weights inside, ``metadata`` as properties."""
    need_onnx()
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"opset must be an int >= {MIN_OPSET}, got {opset!r}")
    example = tuple(program.example_inputs[0])
    try:
        # The exporter logs one warning per torchvision op it cannot register; nothing here uses them.
        with quiet_torch("torch.onnx._internal.exporter._registration"):
            exported = torch.onnx.export(program, example, None, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                         opset_version=opset, dynamo=True, external_data=False, verbose=False)
    except Exception as error:  # noqa: BLE001 - the exporter raises its own types; all mean "cannot export"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"the ONNX exporter (opset {opset}) failed: {type(error).__name__}: {first}") from error
    exported.rename_axes({exported.model.graph.inputs[0].shape[0]: BATCH_AXIS})
    model = exported.model_proto
    keep_insightface_normalization(model)
    model.producer_name = "pyfacex"
    model.doc_string = ("Face embedder: input 'data' float (N, 3, S, S) RGB, (x - 127.5) / 127.5; "
                        "output 'embedding' (N, d), not normalised")
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def onnx_bytes(program: torch.export.ExportedProgram, opset: int = DEFAULT_OPSET,
               metadata: dict[str, str] | None = None) -> bytes:
    """The ``.onnx`` file of :func:`onnx_model`, after ``onnx.checker`` (full check, shapes included)."""
    import onnx

    model = onnx_model(program, opset, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def onnx_opset(data: bytes) -> int:
    """The default-domain opset of an ONNX file's bytes."""
    import onnx

    model = onnx.load_from_string(data)
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
