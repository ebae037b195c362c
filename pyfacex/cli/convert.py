"""``pyfacex convert``: insightface / AdaFace weights as a pyfacex model file.

    pyfacex convert SRC --arch NAME --out MODEL.pt [--from auto|insightface|onnx|adaface] [--no-check]
                    [--overwrite]

SRC is an arcface_torch backbone ``.pth``, an insightface ONNX recognition model or an AdaFace
``.ckpt`` (``--from auto``: told apart by content). NAME is the iResNet it holds (iresnet18 …
iresnet200, irse50; AdaFace's ir_101 is iresnet100, ir_se_50 irse50). ONNX sources are compared with
the converted model through onnxruntime before anything is written (``--no-check`` skips it). The
model file is what training writes, so ``pyfacex eval MODEL.pt ...`` evaluates it; see
:mod:`pyfacex.convert` for what each source becomes.
"""
from __future__ import annotations

__all__ = ["add_parser", "run"]

# "auto" + pyfacex.convert.SOURCES, spelled out: importing pyfacex.convert loads every model at each CLI start
_SOURCES = ("auto", "insightface", "onnx", "adaface")


def add_parser(commands) -> None:
    """Add ``convert`` to the ``pyfacex`` sub-commands."""
    parser = commands.add_parser(
        "convert", help="insightface .pth / ONNX or AdaFace .ckpt weights -> a pyfacex model file",
        description="Turn an insightface arcface_torch backbone (.pth), an insightface ONNX recognition model or "
                    "an AdaFace checkpoint (.ckpt) into a pyfacex model file, checked against the original (ONNX: "
                    "through onnxruntime).")
    parser.add_argument("src", metavar="SRC", help="the weights: backbone.pth, model.onnx or adaface_*.ckpt")
    parser.add_argument("--arch", required=True, metavar="NAME",
                        help="the iResNet SRC holds: iresnet18, 34, 50, 100, 200 or irse50 (AdaFace ir_18/34/50/101: "
                             "iresnet18/34/50/100; ir_se_50: irse50)")
    parser.add_argument("--out", required=True, metavar="MODEL.pt", help="the pyfacex model file to write")
    parser.add_argument("--from", dest="source", choices=_SOURCES, default="auto",
                        help="what SRC is (auto: from its content)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="do not compare an ONNX source with the converted model through onnxruntime")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(run=run)


def run(args) -> int:
    """Convert ``args.src`` into ``args.out`` and print what was written and checked."""
    from ..convert import convert

    try:
        report = convert(args.src, args.arch, args.out, source=args.source, check=args.check,
                         overwrite=args.overwrite)
    except ModuleNotFoundError as error:  # onnx / onnxruntime missing: say how to install them
        raise ValueError(str(error)) from None
    info, origin = report.info, report.info["converted_from"]
    kwargs = ", ".join(f"{k}={v}" for k, v in info["kwargs"].items()) or "defaults"
    print(f"wrote {report.path}: {info['name']} ({kwargs}), {report.tensors} tensors, "
          f"{info['image_size']}x{info['image_size']} {info['channel_order']} faces")
    print(f"  from {origin['source']} {origin['file']}", end="")
    if origin.get("stem_channels_reversed"):
        print(f" (reads {origin['channel_order']}: the stem's input channels were reversed)", end="")
    if origin.get("input") == "pixels":
        print(f" (normalises raw pixels itself: scale {origin['input_scale']:.6g} folded into the stem)", end="")
    if origin.get("ignored_entries"):
        print(f"; {origin['ignored_entries']} entries outside the backbone left out", end="")
    print()
    if report.check is not None:
        print(f"  onnxruntime agrees on {report.check['images']} faces: min cosine {report.check['min_cosine']:.6f}, "
              f"max |difference| {report.check['max_abs_difference']:.2e}")
    elif origin["source"] == "onnx":
        print("  not compared with the ONNX original (--no-check)")
    return 0
