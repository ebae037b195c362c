"""``pyfacex eval``: run benchmark protocols on a trained model file and report them.

    pyfacex eval MODEL PROTOCOL [PROTOCOL ...] [--batch-size 64] [--folds 10] [--no-flip] [--device auto] [--out DIR] [--name NAME]

MODEL is a model file written by training (:func:`pyfacex.train.checkpoint.save_model`); its
embedder sees faces resized to the file's ``image_size``. Each PROTOCOL is a spec of
:func:`pyfacex.eval.evaluate_protocol`: ``[name=][kind:]path`` (``lfw=/data/lfw``, ``/data/agedb_30.bin``,
``cfp-ff:/data/cfp``, ``/data/IJB_release``, ...).

Prints a :class:`pyfacex.eval.ResultsTable` with one row (the model) and, per protocol, the columns
``"<protocol> <metric>"``: verification protocols (``.bin``, LFW, CFP, YTF) accuracy ± std, AUC, EER
and TAR@FAR 1e-4, 1e-3 (interpolated); TinyFace rank-1, rank-5 and mAP; IJB TAR@FAR 1e-5, 1e-4,
1e-3 (insightface's "nearest" convention) and 1:N rank-1. With ``--out DIR``: ``results.json`` (the
table, :meth:`ResultsTable.from_json` reads it), ``results.md`` and ``roc_<protocol>.png`` for every
protocol with pair scores.
"""
from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

from ._args import positive_int

__all__ = ["add_parser", "run"]


def _device(text: str) -> str:
    if text == "auto":
        return text
    import torch

    try:
        torch.device(text)
    except RuntimeError as error:
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r} ({error})") from None
    return text


def add_parser(commands) -> None:
    """Add ``eval`` to the ``pyfacex`` sub-commands."""
    parser = commands.add_parser(
        "eval", help="evaluate a model file on benchmark protocols",
        description="Run benchmark protocols (insightface .bin, LFW pairs.txt, CFP, TinyFace, IJB-B/C, YTF) "
                    "on a model file written by training; print a results table and optionally save it "
                    "with ROC curves.")
    parser.add_argument("model", metavar="MODEL", help="pyfacex model file (training's OUTPUT/model.pt)")
    parser.add_argument("protocols", metavar="PROTOCOL", nargs="+",
                        help="[name=][kind:]path; kinds: bin, lfw, cfp-fp, cfp-ff, tinyface, ijbb, ijbc, ytf "
                             "(default: detected from the layout)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass (64)")
    parser.add_argument("--folds", type=positive_int, default=10,
                        help="k of the k-fold protocol on .bin files, which store no folds (10)")
    parser.add_argument("--no-flip", dest="flip", action="store_false",
                        help="do not add the embedding of the mirrored face")
    parser.add_argument("--device", type=_device, default="auto", help="auto (CUDA when available), cpu, cuda:N")
    parser.add_argument("--out", help="folder for results.json, results.md and the ROC PNGs")
    parser.add_argument("--name", help="row name of the model (default: the model file's model name)")
    parser.set_defaults(run=run)


def run(args) -> int:
    """Evaluate ``args.model`` on ``args.protocols``; print (and with ``args.out`` save) the results."""
    import torch

    from ..eval import evaluate_protocol, resolve_spec
    from ..eval.summary import save_summary, summarize
    from ..train.checkpoint import load_embedder

    model_path = Path(args.model)
    if not model_path.is_file():
        raise FileNotFoundError(f"MODEL: {model_path} does not exist (expected a pyfacex model file written by "
                                f"training)")
    specs, names = [], {}
    for spec in args.protocols:   # all specs are checked before any work
        name, kind, path = resolve_spec(spec)
        if name in names:
            raise ValueError(f"PROTOCOL: {spec!r} and {names[name]!r} are both named {name!r}; name them: NAME=PATH")
        names[name] = spec
        specs.append(f"{name}={kind}:{path}")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    try:
        model, info = load_embedder(model_path, device=device)
    except (pickle.UnpicklingError, EOFError, RuntimeError) as error:
        raise ValueError(f"MODEL: {model_path} is not a pyfacex model file ({error})") from error
    row = args.name or str(info.get("name") or model_path.stem)
    image_size = info.get("image_size")

    results = []
    for spec in specs:
        results.append(evaluate_protocol(spec, model, batch_size=args.batch_size, flip=args.flip, device=device,
                                         image_size=image_size, progress=True, folds=args.folds))
    rows = {row: results}
    table = summarize(rows, title=f"pyfacex eval: {model_path.name} ({image_size}x{image_size}, "
                                  f"{'flip' if args.flip else 'no flip'})")
    print(table.to_text())
    if args.out:
        written = save_summary(table, rows, args.out)
        print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0
