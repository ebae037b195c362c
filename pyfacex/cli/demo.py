"""``pyfacex demo``: the embedded default run (see :mod:`pyfacex.train.demo`).

    pyfacex demo [--out runs/demo] [--epochs 6] [--identities 400] [--per-id 16] [--test-identities 200]
"""
from __future__ import annotations

from ._args import positive_int

__all__ = ["add_parser", "run"]


def add_parser(commands) -> None:
    """Add ``demo`` to the ``pyfacex`` sub-commands."""
    from ..train.demo import DemoSettings

    defaults = DemoSettings()
    parser = commands.add_parser(
        "demo", help="synthetic faces → LGAF vs ArcFace → LFW/CFP-FP/TinyFace-like results, on CPU",
        description="Render a synthetic face world, train a small LGAF and an ArcFace baseline of the same "
                    "backbone on CPU, evaluate both on synthetic LFW-like (verification), CFP-FP-like (frontal "
                    "vs profile) and TinyFace-like (low-resolution identification) protocols, print the table "
                    "and write it with ROC curves. About 6 minutes on 2 CPU cores.")
    parser.add_argument("--out", default="runs/demo", help="output folder (runs/demo); its data/ is reused")
    parser.add_argument("--epochs", type=positive_int, default=defaults.epochs, help=f"({defaults.epochs})")
    parser.add_argument("--identities", type=positive_int, default=defaults.identities,
                        help=f"training identities ({defaults.identities})")
    parser.add_argument("--per-id", type=positive_int, default=defaults.per_identity,
                        help=f"training faces per identity ({defaults.per_identity})")
    parser.add_argument("--test-identities", type=positive_int, default=defaults.test_identities,
                        help=f"people per test protocol ({defaults.test_identities})")
    parser.add_argument("--image-size", type=positive_int, default=defaults.image_size,
                        help=f"face side the models see, a multiple of 16 ({defaults.image_size})")
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size, help=f"({defaults.batch_size})")
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"world and training seed ({defaults.seed})")
    parser.set_defaults(run=run)


def run(args) -> int:
    """Run the demo with the command line's settings."""
    import dataclasses

    from ..train.demo import DemoSettings, run_demo

    settings = dataclasses.replace(DemoSettings(), epochs=args.epochs, identities=args.identities,
                                   per_identity=args.per_id, test_identities=args.test_identities,
                                   image_size=args.image_size, batch_size=args.batch_size, seed=args.seed)
    run_demo(args.out, settings)
    return 0
