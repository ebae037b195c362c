"""``pyfacex embed``: one's own images -> an ``.npz`` of embeddings.

    pyfacex embed MODEL INPUT --out FEATS.npz [--landmarks CSV] [--batch-size 64] [--workers N]
                  [--device auto] [--skip-bad] [--no-exif] [--no-flip]

INPUT is a folder (every image under it, recursively), a list file (one path a line) or a CSV
(``path[,x1,y1,...,x5,y5]`` or 136 numbers for 68 points); see :mod:`pyfacex.embed.inputs`. With
landmarks (in INPUT, or in a sidecar ``--landmarks CSV`` of ``path,x1,y1,...,x5,y5`` rows) every
face is aligned by its five points (:func:`pyfacex.data.landmarks.align_face`, insightface's
``norm_crop``); without, the images must already be aligned face crops
(insightface's 112×112 framing) and are only resized to the model's input size. Photos are turned
upright by their EXIF orientation first (``--no-exif``: the stored pixels; landmarks must then
refer to those). The output is described in :mod:`pyfacex.embed.output`.
"""
from __future__ import annotations

import os
import sys

from ._args import device_name, non_negative_int, positive_int

__all__ = ["add_parser", "run"]

_SHOWN_SKIPS = 10   # skipped files listed on the terminal (all are in the output file)


def add_parser(commands) -> None:
    """Add ``embed`` to the ``pyfacex`` sub-commands."""
    parser = commands.add_parser(
        "embed", help="embed a folder, list or CSV of face images into an .npz",
        description="Embed face images with a model file: L2-normalised embeddings, their raw norms (a quality "
                    "score) and the image paths, in an .npz. With landmarks the faces are aligned by five "
                    "points; without, the images must already be aligned face crops (insightface's 112x112 "
                    "framing) and are only resized to the model's input size.")
    parser.add_argument("model", metavar="MODEL", help="pyfacex model file (training's OUTPUT/model.pt)")
    parser.add_argument("input", metavar="INPUT",
                        help="a folder (images found recursively), a list file (one path a line) or a CSV "
                             "(path[,10 or 136 landmark numbers]); relative paths are taken from the file's folder")
    parser.add_argument("--out", required=True, metavar="FEATS.npz", help="the .npz file to write")
    parser.add_argument("--landmarks", metavar="CSV",
                        help="a landmark sidecar for INPUT's images, path,x1,y1,...,x5,y5 per row (the format "
                             "pyfacex eval reads; relative paths from the CSV's folder), in the pixels of the "
                             "photo as decoded (upright unless --no-exif); faces are aligned by them")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="faces per forward pass (64)")
    parser.add_argument("--workers", type=non_negative_int, default=min(4, os.cpu_count() or 1),
                        help="DataLoader processes decoding and aligning (default: min(4, CPUs); 0: none)")
    parser.add_argument("--device", type=device_name, default="auto", help="auto (CUDA when available), cpu, cuda:N")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out images that cannot be read or aligned, or have no landmarks when the "
                             "others have (listed in the output), instead of stopping at the first")
    parser.add_argument("--no-exif", dest="exif", action="store_false",
                        help="ignore the photos' EXIF orientation (default: turn them upright first, as viewers "
                             "and cv2.imread do)")
    parser.add_argument("--no-flip", dest="flip", action="store_false",
                        help="do not add the embedding of the mirrored face")
    parser.set_defaults(run=run)


def report_skipped(skipped: list[tuple[str, str]]) -> None:
    """Print the skipped files (the first few) to stderr."""
    if not skipped:
        return
    print(f"skipped {len(skipped)} unreadable image(s):", file=sys.stderr)
    for _, error in skipped[:_SHOWN_SKIPS]:
        print(f"  {error}", file=sys.stderr)
    if len(skipped) > _SHOWN_SKIPS:
        print(f"  ... and {len(skipped) - _SHOWN_SKIPS} more (all listed under 'skipped' in the output)",
              file=sys.stderr)


def run(args) -> int:
    """Embed ``args.input`` with ``args.model`` into ``args.out``; say what was written."""
    from ..data.landmarks import read_landmarks_csv
    from ..embed import FaceEmbedder, attach_landmarks, list_images, save_embeddings

    # inputs are read and checked before the model loads; with --skip-bad an image without landmarks
    # (no face found by the detector) is skipped like an unreadable one
    images = list_images(args.input, allow_missing=args.skip_bad)
    if args.landmarks:
        images = attach_landmarks(images, read_landmarks_csv(args.landmarks), "--landmarks",
                                  allow_missing=args.skip_bad)
    embedder = FaceEmbedder(args.model, device=args.device, flip=args.flip, batch_size=args.batch_size)
    result = embedder.embed_files(images, workers=args.workers, exif=args.exif, skip_bad=args.skip_bad,
                                  progress=True)
    path = save_embeddings(args.out, result)
    report_skipped(result.skipped)
    rotated = int((result.orientation != 1).sum())
    how = "aligned by landmarks" if result.landmarks is not None else "taken as aligned crops"
    exif = f"EXIF orientation {'applied' if args.exif else 'ignored'} ({rotated} not upright)"
    print(f"wrote {path}: {len(result.paths)} embeddings of size {result.embeddings.shape[1]} "
          f"({how}, {args.model} at {embedder.image_size}x{embedder.image_size}, "
          f"{'flip' if embedder.flip else 'no flip'}; {exif})")
    if not result.paths and not result.skipped:
        print(f"note: {args.input} holds no image", file=sys.stderr)
    return 0
