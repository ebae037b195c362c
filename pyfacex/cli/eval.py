"""``pyfacex eval``: run benchmark protocols on a trained model file and report them.

    pyfacex eval MODEL PROTOCOL [PROTOCOL ...] [--batch-size 64] [--folds 10] [--no-flip] [--device auto]
                 [--set-function model|mean] [--seed 0] [--out DIR] [--name NAME]

MODEL is a model file written by training (:func:`pyfacex.train.checkpoint.save_model`); its
embedder sees faces resized to the file's ``image_size``. Each PROTOCOL is a spec of
:func:`pyfacex.eval.evaluate_protocol`: ``[name=][kind:]path[@option...]`` (``lfw=/data/lfw``,
``/data/agedb_30.bin``, ``cfp-ff:/data/cfp``, ``/data/IJB_release``, ``ijba:/data/IJB-A``,
``/data/lfw@16px`` (QAFace's down-sampled test), ``/data/ytf@blur9`` (motion blur on 9 of 10 frames), ...).

Template and set protocols (IJB-A/B/C, YTF) run the model's own set function when it has one
(``--set-function model``, the default then: LFENet's LIT across each template, the Face
Aggregation Network's aggregate-then-embed) or the mean of per-image embeddings
(``--set-function mean``: IJB-A's "Baseline (Avg.)", YTF's *avg*); the file's whole model is loaded.

Prints a :class:`pyfacex.eval.ResultsTable` with one row (the model) and, per protocol, the columns
``"<protocol> <metric>"``: verification protocols (``.bin``, LFW, CFP, YTF) accuracy ± std, AUC, EER
and TAR@FAR 1e-4, 1e-3 (interpolated); TinyFace rank-1, rank-3, rank-5 and mAP; IJB-A TAR@FAR 1e-3,
1e-2, 1e-1 mean ± std over its splits; IJB-B/C TAR@FAR 1e-5, 1e-4, 1e-3 (insightface's "nearest"
convention) and 1:N rank-1. With ``--out DIR``: ``results.json`` (the table,
:meth:`ResultsTable.from_json` reads it), ``results.md`` and ``roc_<protocol>.png`` for every protocol
with pair scores.
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


def _non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def add_parser(commands) -> None:
    """Add ``eval`` to the ``pyfacex`` sub-commands."""
    parser = commands.add_parser(
        "eval", help="evaluate a model file on benchmark protocols",
        description="Run benchmark protocols (insightface .bin, LFW pairs.txt, CFP, TinyFace, IJB-A/B/C, YTF) "
                    "on a model file written by training; print a results table and optionally save it "
                    "with ROC curves.")
    parser.add_argument("model", metavar="MODEL", help="pyfacex model file (training's OUTPUT/model.pt)")
    parser.add_argument("protocols", metavar="PROTOCOL", nargs="+",
                        help="[name=][kind:]path[@option...]; kinds: bin, lfw, cfp-fp, cfp-ff, tinyface, ijba, ijbb, "
                             "ijbc, ytf (default: detected from the layout); options: @Npx (down-sample to NxN and "
                             "back), @blurL (YTF: motion blur of size L on 9 of 10 frames)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass (64)")
    parser.add_argument("--folds", type=positive_int, default=10,
                        help="k of the k-fold protocol on .bin files, which store no folds (10)")
    parser.add_argument("--no-flip", dest="flip", action="store_false",
                        help="do not add the embedding of the mirrored face")
    parser.add_argument("--device", type=_device, default="auto", help="auto (CUDA when available), cpu, cuda:N")
    parser.add_argument("--set-function", choices=("model", "mean"), default=None,
                        help="how IJB-A/B/C templates and YTF sets are pooled: the model's own set function "
                             "(default when it has one: LFENet, the Face Aggregation Network) or the mean of "
                             "per-image embeddings")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="seed of @blurL's random draws (0)")
    parser.add_argument("--out", help="folder for results.json, results.md and the ROC PNGs")
    parser.add_argument("--name", help="row name of the model (default: the model file's model name)")
    parser.set_defaults(run=run)


def run(args) -> int:
    """Evaluate ``args.model`` on ``args.protocols``; print (and with ``args.out`` save) the results."""
    import torch

    from ..eval import evaluate_protocol, resolve_spec
    from ..eval.sets import has_set_function
    from ..eval.summary import save_summary, summarize
    from ..train.checkpoint import embedder_for, load_model

    model_path = Path(args.model)
    if not model_path.is_file():
        raise FileNotFoundError(f"MODEL: {model_path} does not exist (expected a pyfacex model file written by "
                                f"training)")
    specs, names = [], {}
    for spec in args.protocols:   # all specs are checked before any work
        name, kind, path, options = resolve_spec(spec)
        if name in names:
            raise ValueError(f"PROTOCOL: {spec!r} and {names[name]!r} are both named {name!r}; name them: NAME=PATH")
        names[name] = spec
        specs.append(f"{name}={kind}:{path}{options.suffix}")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    try:
        whole, info = load_model(model_path, device=device)
    except (pickle.UnpicklingError, EOFError, RuntimeError) as error:
        raise ValueError(f"MODEL: {model_path} is not a pyfacex model file ({error})") from error
    if args.set_function == "model" and not has_set_function(whole):
        raise ValueError(f"--set-function: model needs a model with its own set function (LFENet, the Face "
                         f"Aggregation Network); {model_path} holds a {type(whole).__name__}: use mean")
    model = embedder_for(whole).eval()
    set_function = args.set_function or ("model" if has_set_function(whole) else "mean")
    row = args.name or str(info.get("name") or model_path.stem)
    image_size = info.get("image_size")

    results = []
    for spec in specs:
        results.append(evaluate_protocol(spec, model, batch_size=args.batch_size, flip=args.flip, device=device,
                                         image_size=image_size, progress=True, folds=args.folds, set_model=whole,
                                         set_function=set_function, seed=args.seed))
    rows = {row: results}
    table = summarize(rows, title=f"pyfacex eval: {model_path.name} ({image_size}x{image_size}, "
                                  f"{'flip' if args.flip else 'no flip'}, set function: {set_function})")
    print(table.to_text())
    if args.out:
        written = save_summary(table, rows, args.out)
        print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0
