"""``pyfacex data``: datasets (``data synth`` renders a synthetic face world and its protocols)."""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._args import positive_int

__all__ = ["add_parser"]

_PROTOCOLS = ("lfw", "cfp-fp", "tinyface", "ijb", "ijba", "ytf")


def _csv(choices: Sequence[str]):
    def parse(text: str) -> list[str]:
        values = [v for v in text.split(",") if v]
        unknown = [v for v in values if v not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; expected some of {', '.join(choices)}")
        return values
    return parse


def add_parser(commands) -> None:
    """Add ``data`` to the ``pyfacex`` sub-commands."""
    data = commands.add_parser("data", help="datasets: synthetic faces")
    jobs = data.add_subparsers(dest="job", required=True)
    synth = jobs.add_parser(
        "synth", help="render a synthetic face world to disk",
        description="Render a synthetic training set (image folder and/or insightface RecordIO, with "
                    "ground-truth landmarks, pose and nuisance values) and, optionally, synthetic "
                    "benchmark protocols in the real benchmarks' file formats, from test identities "
                    "disjoint from the training ones.")
    synth.add_argument("--ids", type=positive_int, required=True, help="training identities")
    synth.add_argument("--per-id", type=positive_int, required=True, help="images per identity")
    synth.add_argument("--video-frames", type=positive_int, default=None,
                       help="render each identity's images as videos of this many frames (must divide --per-id) "
                            "and store the video ids (OUT/images/<id>/<video>/<frame>.jpg, the RecordIO's "
                            "second float label); default: still images")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    synth.add_argument("--size", type=int, default=112, help="image side: 112 recognition, 256 landmarks")
    synth.add_argument("--difficulty", type=float, default=0.3, help="global nuisance level in [0, 1] (0.3)")
    synth.add_argument("--formats", type=_csv(("folder", "record")), default=["folder", "record"],
                       help="folder,record (default both)")
    synth.add_argument("--protocols", type=_csv(_PROTOCOLS), default=[],
                       help=f"benchmarks to write under OUT/protocols/: some of {','.join(_PROTOCOLS)}")
    synth.add_argument("--quality", type=int, default=95, help="JPEG quality (95)")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing set")
    synth.set_defaults(run=_synth)


def _synth(args) -> int:
    from pathlib import Path

    from ..data.synthetic import Nuisance, SyntheticFaceWorld
    from ..data.synthetic import protocols as P
    from ..data.synthetic.export import write_training_set

    world = SyntheticFaceWorld(seed=args.seed, size=args.size, nuisance=Nuisance(difficulty=args.difficulty))
    out = write_training_set(world, args.out, args.ids, args.per_id, frames_per_video=args.video_frames,
                             formats=args.formats, quality=args.quality, overwrite=args.overwrite)
    writers = {"lfw": P.write_lfw_like, "cfp-fp": P.write_cfp_fp_like, "tinyface": P.write_tinyface_like,
               "ijb": P.write_ijb_like, "ijba": P.write_ijba_like, "ytf": P.write_ytf_like}
    for name in args.protocols:
        writers[name](world, Path(out) / "protocols" / name, seed=args.seed, quality=args.quality)
    print(f"wrote {args.ids * args.per_id} images of {args.ids} identities to {out}"
          + (f" and protocols {', '.join(args.protocols)}" if args.protocols else ""))
    return 0
