"""``pyfacex eval``: run benchmark protocols on a trained model file and report them.

    pyfacex eval MODEL PROTOCOL [PROTOCOL ...] [--batch-size 64] [--workers 0] [--amp] [--folds 10] [--no-flip]
                 [--no-align] [--device auto] [--set-function model|mean] [--seed 0] [--out DIR] [--name NAME]
                 [--calibrate FAR] [--no-cache] [--cache-dir DIR]
    pyfacex eval --arch iresnet100 --weights backbone.pth PROTOCOL [PROTOCOL ...] [...]
    pyfacex eval --compare DIR DIR [DIR ...] [--out DIR]

MODEL is a model file written by training (:func:`pyfacex.train.checkpoint.save_model`) or by
``pyfacex convert``, or an ``.onnx`` file (``pyfacex export``'s, or insightface's recognition models;
run through onnxruntime); its embedder sees faces resized to the file's ``image_size``. With
``--weights SRC --arch NAME`` (and no MODEL) a peer's weights (insightface arcface_torch ``.pth``,
insightface ``.onnx``, AdaFace ``.ckpt``) are evaluated as :func:`pyfacex.convert.import_model`
reads them, without converting first. Each PROTOCOL is a spec of
:func:`pyfacex.eval.evaluate_protocol`: ``[name=][kind:]path[@option...]`` (``lfw=/data/lfw``,
``/data/agedb_30.bin``, ``cfp-ff:/data/cfp``, ``/data/IJB_release``, ``ijba:/data/IJB-A``,
``/data/lfw@16px`` (QAFace's down-sampled test), ``/data/ytf@blur9`` (motion blur on 9 of 10 frames), ...).

Faces are aligned by the landmarks the protocol's files give, as insightface aligns test faces: IJB-B/C's
loose crops by the five points of ``*_name_5pts_score.txt`` (the faces of every published IJB table),
LFW / CFP / TinyFace images by a ``landmarks.csv`` sidecar in the protocol folder
(``path,x1,y1,...,x5,y5``) when there is one. ``--no-align`` (or a spec's ``@noalign``) takes the
stored images as already aligned crops and only resizes them. IJB-A (no five points) and YTF crop
each image's face box.

Template and set protocols (IJB-A/B/C, YTF) run the model's own set function when it has one
(``--set-function model``, the default then: LFENet's LIT across each template, the Face
Aggregation Network's aggregate-then-embed) or the mean of per-image embeddings
(``--set-function mean``: IJB-A's "Baseline (Avg.)", YTF's *avg*); the file's whole model is loaded.

Prints a :class:`pyfacex.eval.ResultsTable` with one row (the model) and, per protocol, the columns
``"<protocol> <metric>"``: verification protocols (``.bin``, LFW, CFP, YTF) accuracy ± std, AUC, EER
and TAR@FAR 1e-4, 1e-3 (interpolated); TinyFace rank-1, rank-3, rank-5 and mAP; IJB-A TAR@FAR 1e-3,
1e-2, 1e-1 mean ± std over its splits; IJB-B/C TAR@FAR 1e-5, 1e-4, 1e-3 (insightface's "nearest"
convention) and 1:N rank-1. With ``--out DIR``: ``results.json`` (the table,
:meth:`ResultsTable.from_json` reads it), ``results.md``, ``roc_<protocol>.png`` for every protocol
with pair scores, and insightface-layout dumps (:mod:`pyfacex.eval.dumps`): ``scores/<protocol>.npy``
with ``scores/<protocol>_label.npy``, and ``features/<protocol>_<name>.npy``. ``--compare DIR DIR ...``
reads such folders back: one table with a row per run, and with ``--out`` ROC overlays of the runs.

Scale: ``--workers N`` decodes and aligns images in N DataLoader worker processes; ``--amp`` runs the
network under autocast (bfloat16 on the CPU, float16 on CUDA; scores stay float32/64). The network's
outputs are cached per (model file hash, protocol, precision, device type) under
``$XDG_CACHE_HOME/pyfacex/features`` (:mod:`pyfacex.embed.feature_cache`; ``--cache-dir``,
``--no-cache``), keyed by the content of each input batch: evaluating the same model on the same
protocol again (other ``--folds``, ``--calibrate``, another ``--out``) reads and aligns the images
but runs no forward pass.

``--calibrate FAR`` (``--calibrate-on NAME`` when several protocols have pairs) then stores in MODEL
the lowest cosine threshold whose false accept rate on that protocol's pairs is at most FAR, with the
FAR, the protocol and the flip setting (:mod:`pyfacex.embed.calibration`); ``pyfacex compare`` and
``FaceEmbedder.decide`` decide at it.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ._args import device_name, non_negative_int, positive_int

__all__ = ["add_parser", "run"]




def add_parser(commands) -> None:
    """Add ``eval`` to the ``pyfacex`` sub-commands."""
    parser = commands.add_parser(
        "eval", help="evaluate a model file on benchmark protocols",
        description="Run benchmark protocols (insightface .bin, LFW pairs.txt, CFP, TinyFace, IJB-A/B/C, YTF) "
                    "on a model file written by training; print a results table and optionally save it "
                    "with ROC curves.")
    parser.add_argument("model", metavar="MODEL", nargs="?",
                        help="pyfacex model file (training's OUTPUT/model.pt, pyfacex convert's) or an .onnx file; "
                             "omitted with --weights")
    parser.add_argument("protocols", metavar="PROTOCOL", nargs="*",
                        help="[name=][kind:]path[@option...]; kinds: bin, lfw, cfp-fp, cfp-ff, tinyface, ijba, ijbb, "
                             "ijbc, ytf (default: detected from the layout); options: @Npx (down-sample to NxN and "
                             "back), @blurL (YTF: motion blur of size L on 9 of 10 frames)")
    parser.add_argument("--weights", metavar="SRC",
                        help="evaluate a peer's weights without converting: insightface .pth or .onnx, AdaFace .ckpt "
                             "(needs --arch; MODEL is then omitted)")
    parser.add_argument("--arch", help="with --weights: iresnet18 ... iresnet200, irse50")
    parser.add_argument("--from", dest="source", default="auto",
                        help="with --weights: auto (from the content), insightface, onnx or adaface")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass (64)")
    parser.add_argument("--workers", type=non_negative_int, default=0,
                        help="DataLoader worker processes that decode and align images (0: the main process)")
    parser.add_argument("--amp", action="store_true",
                        help="run the network under autocast: bfloat16 on the CPU, float16 on CUDA")
    parser.add_argument("--no-cache", dest="cache", action="store_false",
                        help="neither read nor write the feature cache")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="feature cache folder (default: $XDG_CACHE_HOME/pyfacex/features, ~/.cache/...)")
    parser.add_argument("--compare", nargs="+", metavar="DIR",
                        help="compare run folders written by --out (no MODEL): one table, ROC overlays with --out")
    parser.add_argument("--folds", type=positive_int, default=10,
                        help="k of the k-fold protocol on .bin files, which store no folds (10)")
    parser.add_argument("--no-align", dest="align", action="store_false",
                        help="do not align faces by the protocol's landmarks (IJB-B/C's five points, a "
                             "landmarks.csv sidecar): for crops that are already aligned")
    parser.add_argument("--no-flip", dest="flip", action="store_false",
                        help="do not add the embedding of the mirrored face")
    parser.add_argument("--device", type=device_name, default="auto", help="auto (CUDA when available), cpu, cuda:N")
    parser.add_argument("--set-function", choices=("model", "mean"), default=None,
                        help="how IJB-A/B/C templates and YTF sets are pooled: the model's own set function "
                             "(default when it has one: LFENet, the Face Aggregation Network) or the mean of "
                             "per-image embeddings")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of @blurL's random draws (0)")
    parser.add_argument("--out", help="folder for results.json, results.md, the ROC PNGs and the score and "
                                      "feature dumps")
    parser.add_argument("--name", help="row name of the model (default: the model file's model name)")
    parser.add_argument("--calibrate", type=float, metavar="FAR",
                        help="store in MODEL the cosine threshold at this false accept rate (e.g. 1e-4) on the "
                             "protocol's pairs, for pyfacex compare and FaceEmbedder.decide")
    parser.add_argument("--calibrate-on", metavar="NAME",
                        help="the protocol --calibrate uses when several have pairs (default: the only one)")
    parser.set_defaults(run=run)


def run(args) -> int:
    """Evaluate ``args.model`` on ``args.protocols``; print (and with ``args.out`` save) the results."""
    import torch

    from ..embed.feature_cache import default_cache_dir, feature_cache_file, file_digest, load_cache, save_cache
    from ..eval import evaluate_protocol, resolve_spec
    from ..eval.dumps import save_dumps
    from ..eval.sets import has_set_function
    from ..eval.summary import save_summary, summarize
    from ..eval.wrappers import AutocastEmbedder, MemoizedEmbedder
    from ..train.checkpoint import UnreadableFileError, embedder_for, load_model

    if args.compare:
        return _compare(args)
    if args.model is None and not args.weights:
        raise ValueError("MODEL: expected a model file (or --weights SRC --arch NAME, or --compare DIR DIR ...)")
    protocols = [args.model, *args.protocols] if args.weights and args.model else args.protocols
    if not protocols:
        raise ValueError("PROTOCOL: expected at least one protocol after MODEL")
    if args.weights and not args.arch:
        raise ValueError("--weights: needs --arch (iresnet18 ... iresnet200, irse50)")
    if args.arch and not args.weights:
        raise ValueError("--arch: applies to --weights SRC (a pyfacex model file knows its architecture)")
    model_path = Path(args.weights or args.model)
    if not model_path.is_file():
        raise FileNotFoundError(f"{'--weights' if args.weights else 'MODEL'}: {model_path} does not exist (expected "
                                f"{'a peer checkpoint' if args.weights else 'a pyfacex model file or an .onnx file'})")
    onnx = not args.weights and model_path.suffix.lower() == ".onnx"
    if args.amp and onnx:
        raise ValueError("--amp: an .onnx model runs in onnxruntime at the precision of its graph; evaluate the .pt "
                         "it came from, or drop --amp")
    if args.calibrate is not None and (args.weights or onnx):
        raise ValueError("--calibrate: stores the threshold in a pyfacex model file; convert the weights first "
                         "(pyfacex convert) or calibrate the .pt the .onnx came from")
    specs, names = [], {}
    for spec in protocols:   # all specs are checked before any work
        name, kind, path, options = resolve_spec(spec)
        if name in names:
            raise ValueError(f"PROTOCOL: {spec!r} and {names[name]!r} are both named {name!r}; name them: NAME=PATH")
        names[name] = spec
        specs.append(f"{name}={kind}:{path}{options.suffix}")
    if args.calibrate is not None or args.calibrate_on is not None:   # checked before any work too
        from ..embed.calibration import check_far, choose_protocol

        if args.calibrate is None:
            raise ValueError("--calibrate-on: needs --calibrate FAR")
        check_far(args.calibrate, "--calibrate")
        calibrate_on = choose_protocol(specs, args.calibrate_on)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.weights:
        from ..convert import import_model

        whole, info = import_model(model_path, args.arch, source=args.source, device=device)
    elif onnx:
        from ..export import load_onnx_embedder

        whole, info = load_onnx_embedder(model_path, device=device)   # no set function: templates take the mean
    else:
        try:
            whole, info = load_model(model_path, device=device)
        except UnreadableFileError as error:
            raise ValueError(f"MODEL: {model_path} is not a pyfacex model file: it cannot be read "
                             f"{error.detail}") from error
    if args.set_function == "model" and not has_set_function(whole):
        raise ValueError(f"--set-function: model needs a model with its own set function (LFENet, the Face "
                         f"Aggregation Network); {model_path} holds a {type(whole).__name__}: use mean")
    model = whole if onnx else embedder_for(whole).eval()
    set_function = args.set_function or ("model" if has_set_function(whole) else "mean")
    row = args.name or str(info.get("name") or model_path.stem)
    image_size = info.get("image_size")
    if args.amp:
        model, whole = AutocastEmbedder(model), AutocastEmbedder(whole)
    digest = file_digest(model_path, f"{args.arch}:{args.source}" if args.weights else "") if args.cache else None

    results = []
    for name, spec in zip(names, specs):
        memos = None
        if digest is not None:
            cache_file = feature_cache_file(args.cache_dir or default_cache_dir(), digest, name, args.amp, device)
            memos = load_cache(cache_file)
        embedder = model if memos is None else MemoizedEmbedder(model, memos["embedder"])
        set_model = whole if memos is None else MemoizedEmbedder(whole, memos["set_model"])
        results.append(evaluate_protocol(spec, embedder, batch_size=args.batch_size, flip=args.flip, device=device,
                                         image_size=image_size, progress=True, folds=args.folds, set_model=set_model,
                                         set_function=set_function, seed=args.seed, align=args.align,
                                         num_workers=args.workers))
        if memos is not None:
            hits, misses = embedder.hits + set_model.hits, embedder.misses + set_model.misses
            if misses:
                save_cache(cache_file, memos)
            print(f"{results[-1].name}: {hits} of {hits + misses} network calls from the feature cache "
                  f"{cache_file}", file=sys.stderr)
    rows = {row: results}
    table = summarize(rows, title=f"pyfacex eval: {model_path.name} ({image_size}x{image_size}, "
                                  f"{'flip' if args.flip else 'no flip'}, set function: {set_function})")
    print(table.to_text())
    if args.out:
        written = save_summary(table, rows, args.out) + save_dumps(results, args.out)
        print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    if args.calibrate is not None:
        from ..embed.calibration import calibrate_model, describe

        record = calibrate_model(model_path, results, calibrate_on, args.calibrate, flip=args.flip, specs=specs,
                                 set_function=set_function)
        print(f"stored in {model_path}: threshold {record['threshold']:.4f} at {describe(record)}")
    return 0


def _compare(args) -> int:
    """``--compare``: the run folders' tables as one, and ROC overlays with ``--out``; no model runs."""
    from ..eval.dumps import compare_runs

    if args.model or args.protocols or args.weights:
        raise ValueError("--compare: compares run folders; give no MODEL, PROTOCOL or --weights with it")
    table = compare_runs(args.compare, args.out)
    print(table.to_text())
    if args.out:
        print(f"wrote {args.out}/results.json, results.md and the ROC overlays", file=sys.stderr)
    return 0
