"""``pyfacex export``: a model file's embedder as a deployable file.

    pyfacex export MODEL [--format onnx|torchscript|exported-program] [--out FILE] [--opset 18] [--no-verify]

The file maps faces (N, 3, S, S) float32 — RGB, (x − 127.5)/127.5, S the model's image size, N
any — to (N, d) embeddings (not normalised). ``onnx``: input ``data``, output ``embedding``;
insightface's ``ArcFaceONNX`` and onnxruntime run it as it is (``pip install 'pyfacex[onnx]'``).
``torchscript``: ``torch.jit.load``, also from C++. ``exported-program``: ``torch.export.load``
(``.pt2``). The written file is loaded back and compared with the model on random faces (cosine
>= 0.9999 each) before it replaces FILE; ``--no-verify`` skips that. Default FILE: MODEL with the
format's suffix (``.onnx``, ``.ts``, ``.pt2``). See :func:`pyfacex.export.export_model`.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ._args import int_at_least

__all__ = ["add_parser", "run"]

_FORMATS = ("onnx", "torchscript", "exported-program")  # pyfacex.export.FORMATS, without importing torch here



def add_parser(commands) -> None:
    """Add ``export`` to the ``pyfacex`` sub-commands."""
    parser = commands.add_parser(
        "export", help="write a model's embedder as ONNX, TorchScript or a torch.export program",
        description="Export the embedder of a pyfacex model file (faces in, embeddings out) to ONNX (insightface's "
                    "ArcFaceONNX runs it), TorchScript or a torch.export program, checked against the model.")
    parser.add_argument("model", metavar="MODEL", help="pyfacex model file (training's OUTPUT/model.pt)")
    parser.add_argument("--format", choices=_FORMATS, default="onnx", help="file format (onnx)")
    parser.add_argument("--out", metavar="FILE", help="file to write (default: MODEL with .onnx, .ts or .pt2)")
    parser.add_argument("--opset", type=int_at_least(17, "an opset"), default=18, help="ONNX opset, >= 17 (18)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="do not compare the written file with the model")
    parser.set_defaults(run=run)


def run(args) -> int:
    """Export ``args.model`` as ``args.format`` to ``args.out``; print what was written."""
    from ..export import SUFFIXES, export_model

    out = Path(args.out) if args.out else Path(args.model).with_suffix(SUFFIXES[args.format])
    result = export_model(args.model, out, args.format, opset=args.opset, verify=args.verify)
    size = result.image_size
    shape = f"(N, 3, {size}, {size}) -> (N, {result.embedding_size})"
    checked = (f"min cosine {result.min_cosine:.6f} against the model" if result.min_cosine is not None
               else "not compared with the model" + ("" if not args.verify else " (onnxruntime is not installed)"))
    opset = f", opset {result.opset}" if result.opset is not None else ""
    print(f"wrote {result.path} ({result.format}{opset}; {shape}; {checked})")
    if args.format == "onnx" and not (size >= 112 and size % 16 == 0 and size != 192):
        # insightface 2.1's ModelRouter: square S >= 112, a multiple of 16, and not 192 (its landmark size)
        print(f"note: insightface's model_zoo.get_model does not route a {size}x{size} model to ArcFaceONNX; "
              f"construct ArcFaceONNX(model_file={str(result.path)!r}) directly", file=sys.stderr)
    return 0
