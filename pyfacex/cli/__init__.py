"""The ``pyfacex`` command line: one module per sub-command, each with an ``add_parser(commands)``.

    pyfacex train CONFIG [--set KEY=VALUE ...] [--resume]     train from a recipe (configs/*.yaml)
    pyfacex data synth --ids 2000 --per-id 20 --out DIR     a synthetic training set (+ protocols)
    pyfacex data pack FOLDER --out DIR                      an image folder -> insightface RecordIO (resumable)
    pyfacex data unpack DIR --out FOLDER                    insightface RecordIO -> an image folder
    pyfacex eval MODEL PROTOCOL [PROTOCOL ...] [--out DIR]  benchmark protocols on a model file, results table
    pyfacex eval --compare DIR DIR [...] [--out DIR]        saved eval runs side by side, ROC overlays
    pyfacex info [--json]                                   versions and the backends this installation runs
    pyfacex demo [--out runs/demo]                           synthetic faces -> LGAF vs ArcFace -> results, on CPU
    pyfacex bench [-k EXPR] [--bench-dir DIR] [--json FILE] the benchmarks and their ratio tables
    pyfacex reproduce PAPER [--quick] [--seeds N] [--out DIR] a paper's table on synthetic faces, CIs, verdicts
    pyfacex convert SRC --arch NAME --out MODEL.pt          insightface .pth / ONNX, AdaFace .ckpt -> a model file
    pyfacex export MODEL --format onnx --out FILE           the embedder as ONNX / TorchScript / torch.export .pt2
    pyfacex embed MODEL INPUT --out FEATS.npz [--landmarks CSV] a folder / list / CSV of photos -> embeddings, norms
    pyfacex compare MODEL A.jpg B.jpg [--landmarks CSV]      cosine and the decision at the calibrated threshold
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import bench, compare, convert, data, demo, embed, eval, export, info, reproduce, train

__all__ = ["main", "build_parser"]

_COMMANDS = (train, eval, data, demo, reproduce, bench, info, convert, export, embed, compare)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pyfacex`` command."""
    parser = argparse.ArgumentParser(prog="pyfacex", description="pyfacex: face recognition with PyTorch")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in _COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pyfacex`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"pyfacex {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
