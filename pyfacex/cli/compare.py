"""``pyfacex compare``: are two photos of the same person?

    pyfacex compare MODEL A.jpg B.jpg [--landmarks CSV] [--threshold T] [--device auto] [--no-exif]

Prints the cosine of the two faces' embeddings (computed as ``pyfacex embed`` does) and the decision
at the threshold stored in the model file by ``pyfacex eval MODEL PROTOCOL --calibrate FAR`` (or
``--threshold``). Without either it prints the cosine and how to store a threshold. Without
landmarks both images must be aligned face crops.
"""
from __future__ import annotations

from pathlib import Path

from ._args import device_name

__all__ = ["add_parser", "run"]


def add_parser(commands) -> None:
    """Add ``compare`` to the ``pyfacex`` sub-commands."""
    parser = commands.add_parser(
        "compare", help="cosine of two face photos and the same-person decision at the calibrated threshold",
        description="Embed two face images with a model file and print their cosine and the decision at the "
                    "threshold stored by `pyfacex eval MODEL PROTOCOL --calibrate FAR` (or --threshold). With "
                    "landmarks the faces are aligned by five points; without, the images must already be aligned "
                    "face crops (resized to the model's input size).")
    parser.add_argument("model", metavar="MODEL", help="pyfacex model file (training's OUTPUT/model.pt)")
    parser.add_argument("image_a", metavar="A", help="first image")
    parser.add_argument("image_b", metavar="B", help="second image")
    parser.add_argument("--landmarks", metavar="CSV",
                        help="a landmark sidecar with a row path,x1,y1,...,x5,y5 for A and for B, in the pixels of "
                             "the photos as decoded (upright unless --no-exif); relative paths from the CSV's folder")
    parser.add_argument("--threshold", type=float, default=None,
                        help="decide at this cosine instead of the model file's calibrated threshold")
    parser.add_argument("--device", type=device_name, default="auto", help="auto (CUDA when available), cpu, cuda:N")
    parser.add_argument("--no-exif", dest="exif", action="store_false",
                        help="ignore the photos' EXIF orientation (default: turn them upright first)")
    parser.set_defaults(run=run)


def run(args) -> int:
    """Compare ``args.image_a`` and ``args.image_b`` with ``args.model``; print the cosine and the decision."""
    from ..data.landmarks import read_landmarks_csv
    from ..embed import FaceEmbedder, ImageList, attach_landmarks
    from ..embed.calibration import describe, how_to_calibrate

    names = [args.image_a, args.image_b]
    images = ImageList(names, [Path(n) for n in names])
    if args.landmarks:
        images = attach_landmarks(images, read_landmarks_csv(args.landmarks), "--landmarks")
    embedder = FaceEmbedder(args.model, device=args.device)
    result = embedder.embed_files(images, exif=args.exif)
    cosine = float(embedder.similarity(result.embeddings[0], result.embeddings[1]))
    print(f"cosine: {cosine:.4f}")
    if args.threshold is not None:
        threshold, source = args.threshold, "given by --threshold"
    elif embedder.threshold is not None:
        threshold, source = embedder.threshold, describe(embedder.calibration)
    else:
        print(f"no decision: {args.model} stores no threshold; {how_to_calibrate(args.model)}, or pass --threshold T")
        return 0
    print(f"threshold: {threshold:.4f} ({source})")
    print("same person" if cosine >= threshold else "different people")
    return 0
