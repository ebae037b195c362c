"""``pyfacex data``: datasets. ``data synth`` renders a synthetic face world and its protocols; ``data pack``
turns an image folder into insightface RecordIO (resumably) and ``data unpack`` a RecordIO set back into a folder
(:mod:`pyfacex.data.pack`)."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ..data.synthetic.protocols.ijba import FACE_BOXES
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


def _fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _quality(text: str) -> int:
    """argparse type: a JPEG quality, an integer in 1..100."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected an integer in 1..100, got {text!r}")
    return value


def _knobs(text: str) -> dict[str, float]:
    """argparse type: ``name=value[,name=value]`` nuisance knobs, each a field of ``Nuisance``."""
    from ..data.synthetic import Nuisance

    fields = [name for name in Nuisance.__dataclass_fields__ if name != "difficulty"]
    knobs = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name.strip() not in fields:
            raise argparse.ArgumentTypeError(f"expected name=value with a name among {', '.join(fields)}, got {item!r}")
        try:
            knobs[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number after {name.strip()}=, got {value!r}") from None
    return knobs


def add_parser(commands) -> None:
    """Add ``data`` to the ``pyfacex`` sub-commands."""
    data = commands.add_parser("data", help="datasets: synthetic faces, RecordIO pack/unpack")
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
    synth.add_argument("--nuisance", type=_knobs, default={}, metavar="NAME=VALUE[,...]",
                       help="nuisance knobs other than the default (largest amplitude of each, scaled by "
                            "--difficulty), e.g. blur=10,occlusion=1.5,low_resolution=0.95")
    synth.add_argument("--cohort-size", type=positive_int, default=1,
                       help="identities per look-alike cohort, sharing skin, hair and head shape (default 1: none)")
    synth.add_argument("--cohort-jitter", type=_fraction, default=0.0,
                       help="how far members of a cohort drift back towards their own look, in [0, 1] (default 0)")
    synth.add_argument("--local-variety", type=float, default=1.0,
                       help="spread of the local features (eyes, brows, nose, mouth, marks) that tell a cohort's "
                            "members apart, up to 1.5 (default 1)")
    synth.add_argument("--unrecognisable", type=_fraction, default=0.0, metavar="FRACTION",
                       help="this fraction of the still images rendered unrecognisable (extreme blur, heavy "
                            "occlusion or 4-pixel resolution, chosen by the seed; ground_truth.npz's "
                            "'unrecognisable' says which); default 0")
    synth.add_argument("--formats", type=_csv(("folder", "record")), default=["folder", "record"],
                       help="folder,record (default both)")
    synth.add_argument("--protocols", type=_csv(_PROTOCOLS), default=[],
                       help=f"benchmarks to write under OUT/protocols/: some of {','.join(_PROTOCOLS)}")
    synth.add_argument("--ijb-loose-crop", type=float, default=1.5, metavar="FACTOR",
                       help="ijb: loose crops of FACTOR x the face's side in [1, 4], as a detector's boxes, with "
                            "their 5 points (1.5); 0: the tight, already aligned renders")
    synth.add_argument("--ijba-yaw-spread", type=float, default=None, metavar="DEGREES",
                       help="ijba: spread each template's yaws over [-DEGREES, DEGREES] in (0, 90] (default: the "
                            "world's own yaw draws)")
    synth.add_argument("--ijba-occlusion-share", type=_fraction, default=None, metavar="FRACTION",
                       help="ijba: this share of each template's media hide different face regions (default: the "
                            "world's own occluders)")
    synth.add_argument("--ijba-face-box", choices=FACE_BOXES, default="landmarks",
                       help="ijba: the CSVs' face box: the square around the landmarks (default) or the whole image")
    synth.add_argument("--quality", type=_quality, default=95, help="JPEG quality 1..100 (95)")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing set")
    synth.set_defaults(run=_synth)
    pack = jobs.add_parser(
        "pack", help="an image folder -> insightface RecordIO (train.rec, train.idx, property), resumable",
        description="Pack an image folder (FOLDER/<identity>/<image>, or FOLDER/<identity>/<video>/<frame> with "
                    "the video ids stored as the second float label) into insightface RecordIO, one image in "
                    "memory at a time; identities are numbered in sorted folder order. An interrupted pack "
                    "(Ctrl-C, a killed process) continues where it stopped when the same command runs again; "
                    "DIR/pack.json records the folder listing and settings, and a rerun with others is refused "
                    "(--overwrite starts over).")
    pack.add_argument("folder", metavar="FOLDER", help="the image folder")
    pack.add_argument("--out", required=True, metavar="DIR", help="output folder (train.rec, train.idx, property)")
    pack.add_argument("--encoding", choices=("raw", "jpeg", "png"), default="raw",
                      help="raw (default): the files' bytes as they are; jpeg, png: decode and re-encode")
    pack.add_argument("--quality", type=_quality, default=None, help="JPEG quality 1..100 with --encoding jpeg (95)")
    pack.add_argument("--no-resume", dest="resume", action="store_false",
                      help="start over instead of continuing an interrupted pack in DIR")
    pack.add_argument("--overwrite", action="store_true",
                      help="replace a finished set in DIR, and start over a partial pack of another folder or settings")
    pack.set_defaults(run=_pack)
    unpack = jobs.add_parser(
        "unpack", help="insightface RecordIO -> an image folder that packs back to the same files",
        description="Write a RecordIO set as FOLDER/<label>/<key>.<ext> (FOLDER/<label>/<video>/<key>.<ext> when "
                    "it stores video ids), numbers zero-padded so that sorted names follow them, the stored image "
                    "bytes as they are (the suffix from their format). The files go to FOLDER.partial, renamed "
                    "when complete; running the same command again after an interruption continues it.")
    unpack.add_argument("root", metavar="DIR", help="the RecordIO set (a folder with train.rec, train.idx, "
                                                    "property, or a .rec file)")
    unpack.add_argument("--out", required=True, metavar="FOLDER", help="the image folder to write (must not exist)")
    unpack.add_argument("--overwrite", action="store_true",
                        help="replace an existing FOLDER written by unpack (numbered folders only), and start over "
                             "an unfinished unpack of another set")
    unpack.set_defaults(run=_unpack)


def _check_protocol_options(args) -> None:
    """The protocol writers' options: in range, and only with their protocol (checked before rendering)."""
    given = {"--ijb-loose-crop": ("ijb", args.ijb_loose_crop != 1.5),
             "--ijba-yaw-spread": ("ijba", args.ijba_yaw_spread is not None),
             "--ijba-occlusion-share": ("ijba", args.ijba_occlusion_share is not None),
             "--ijba-face-box": ("ijba", args.ijba_face_box != "landmarks")}
    for flag, (protocol, used) in given.items():
        if used and protocol not in args.protocols:
            raise ValueError(f"{flag}: applies to the {protocol} protocol, which --protocols does not name")
    if args.ijb_loose_crop != 0 and not 1.0 <= args.ijb_loose_crop <= 4.0:
        raise ValueError(f"--ijb-loose-crop: expected 0 (tight renders) or a factor in [1, 4], "
                         f"got {args.ijb_loose_crop}")
    if args.ijba_yaw_spread is not None and not 0.0 < args.ijba_yaw_spread <= 90.0:
        raise ValueError(f"--ijba-yaw-spread: expected degrees in (0, 90], got {args.ijba_yaw_spread}")


def _synth(args) -> int:
    from pathlib import Path

    from ..data.synthetic import Nuisance, SyntheticFaceWorld
    from ..data.synthetic import protocols as P
    from ..data.synthetic.export import write_training_set

    _check_protocol_options(args)
    world = SyntheticFaceWorld(seed=args.seed, size=args.size, nuisance=Nuisance(difficulty=args.difficulty,
                                                                               **args.nuisance),
                               cohort_size=args.cohort_size, cohort_jitter=args.cohort_jitter,
                               local_variety=args.local_variety)
    out = write_training_set(world, args.out, args.ids, args.per_id, frames_per_video=args.video_frames,
                             unrecognisable=args.unrecognisable, formats=args.formats, quality=args.quality,
                             overwrite=args.overwrite)
    writers = {"lfw": P.write_lfw_like, "cfp-fp": P.write_cfp_fp_like, "tinyface": P.write_tinyface_like,
               "ijb": P.write_ijb_like, "ijba": P.write_ijba_like, "ytf": P.write_ytf_like}
    options = {"ijb": {"loose_crop": args.ijb_loose_crop or None},
               "ijba": {"yaw_spread": args.ijba_yaw_spread, "occlusion_share": args.ijba_occlusion_share,
                        "face_box": args.ijba_face_box}}
    for name in args.protocols:
        writers[name](world, Path(out) / "protocols" / name, seed=args.seed, quality=args.quality,
                      **options.get(name, {}))
    print(f"wrote {args.ids * args.per_id} images of {args.ids} identities to {out}"
          + (f" and protocols {', '.join(args.protocols)}" if args.protocols else ""))
    return 0


def _until_interrupted(job: str, call: Callable[[], object]):
    """``call()``, or None after Ctrl-C, which leaves the job to be continued by the same command."""
    try:
        return call()
    except KeyboardInterrupt:
        print(f"pyfacex data {job}: interrupted; run the same command again to continue where it stopped",
              file=sys.stderr)
        return None


def _pack(args) -> int:
    from ..data import RecordDataset
    from ..data.pack import ProgressLine, pack_folder

    if args.quality is not None and args.encoding != "jpeg":
        raise ValueError(f"--quality: applies to --encoding jpeg, got --encoding {args.encoding}")
    out = _until_interrupted("pack", lambda: pack_folder(
        args.folder, args.out, encoding=args.encoding, quality=args.quality or 95, resume=args.resume,
        overwrite=args.overwrite, progress=ProgressLine("pack")))
    if out is None:
        return 130
    dataset = RecordDataset(out)
    print(f"packed {len(dataset)} images of {dataset.num_classes} identities into {out}")
    return 0


def _unpack(args) -> int:
    from ..data.pack import ProgressLine, unpack_record_dataset

    out = _until_interrupted("unpack", lambda: unpack_record_dataset(
        args.root, args.out, overwrite=args.overwrite, progress=ProgressLine("unpack")))
    if out is None:
        return 130
    print(f"unpacked {args.root} into {out}")
    return 0
