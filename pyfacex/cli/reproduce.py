"""``pyfacex reproduce``: rerun a paper's headline table on the synthetic face world (see
:mod:`pyfacex.reproduce`).

    pyfacex reproduce PAPER [--quick] [--seeds N] [--jobs N] [--out DIR] [--cache DIR]
    pyfacex reproduce PAPER --pilot [--quick] [--jobs N] [--out DIR]
    pyfacex reproduce --list

Writes ``DIR/results.json``, ``DIR/results.md`` (the paper's table with our mean ± 95 % CI beside the
paper's numbers, and a verdict per claim) and PNG plots; ``DIR/cells/`` keeps every finished
(variant, seed) cell, so rerunning the same command resumes where it stopped. ``--pilot`` runs the
baseline alone on the spec's candidate worlds (:mod:`pyfacex.reproduce.pilot`), the run from which the
world's difficulty is chosen.
"""
from __future__ import annotations

import sys

from ._args import positive_int

__all__ = ["add_parser", "run"]


def add_parser(commands) -> None:
    """Add ``reproduce`` to the ``pyfacex`` sub-commands."""
    parser = commands.add_parser(
        "reproduce", help="rerun a paper's headline table on synthetic faces: seeds, CIs, verdicts",
        description="Render the paper's synthetic world once (cached), train every row of its table for every "
                    "seed, evaluate them, and write the table with mean ± 95 % CI beside the paper's numbers and "
                    "a verdict per claim (reproduced / same direction, not significant / not reproduced). "
                    "Finished cells are kept: rerunning resumes.")
    parser.add_argument("paper", metavar="PAPER", nargs="?", help="a registered spec (see --list)")
    parser.add_argument("--list", action="store_true", help="print the registered specs, one per line, and exit")
    parser.add_argument("--quick", action="store_true", help="the spec's quick mode: fewer seeds and epochs")
    parser.add_argument("--seeds", type=positive_int, help="how many seeds (0..N-1) instead of the spec's count")
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help="train N cells at once, each in its own process with 1/N of the threads (default 1)")
    parser.add_argument("--pilot", action="store_true",
                        help="the baseline alone, seed 0, on each of the spec's candidate worlds (choosing the "
                             "world's difficulty before any method is trained)")
    parser.add_argument("--out", help="output folder (runs/reproduce/PAPER, PAPER-quick with --quick, "
                                      "PAPER-pilot with --pilot)")
    parser.add_argument("--cache", default="runs/reproduce/cache",
                        help="folder of rendered worlds, one per settings hash (runs/reproduce/cache)")
    parser.set_defaults(run=run)


def run(args) -> int:
    """List the specs, or run one."""
    from ..reproduce import get_spec, list_specs, run_pilot, run_spec

    if args.list:
        names = list_specs()
        if not names:
            print("no paper specs are registered yet", file=sys.stderr)
        for name in names:
            print(f"{name}\t{get_spec(name).paper}")
        return 0
    if args.paper is None:
        raise ValueError(f"PAPER: expected one of the registered specs ({', '.join(list_specs()) or 'none yet'}), "
                         "or --list")
    spec = get_spec(args.paper)
    command = " ".join(["pyfacex reproduce", args.paper] + (["--pilot"] if args.pilot else [])
                       + (["--quick"] if args.quick else []) + ([f"--seeds {args.seeds}"] if args.seeds else [])
                       + ([f"--jobs {args.jobs}"] if args.jobs > 1 else [])
                       + ([f"--out {args.out}"] if args.out else []))
    if args.pilot:
        if args.seeds:
            raise ValueError("--seeds: a pilot runs seed 0 only")
        run_pilot(spec, args.out, quick=args.quick, cache=args.cache, command=command, jobs=args.jobs)
        return 0
    run_spec(spec, args.out, quick=args.quick, seeds=args.seeds, cache=args.cache, command=command, jobs=args.jobs)
    return 0
