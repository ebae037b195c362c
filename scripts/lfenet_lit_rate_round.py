"""The documented round on LFENet's reproduction: is the LIT's learning rate what sinks the LIT rows?

The full run (docs/reproductions/lfenet.md) trains the LIT and the classifier at 20× the backbone's
rate (0.1 against 0.005: the paper's higher LIT rate, Sec. IV-B). Every LIT row ended far below the
baseline, the size-1 row too, whose LIT only relates the local features of one image; the trained
LIT's output A·v was 8 to 17 times the norm of the feature map it is added to (eq. 5), so the refined
maps are mostly the LIT's. This round changes that one setting: the LIT at the backbone's rate (×1,
the classifier still at ×20), for SoftmaxB at T_tr = 3 and 1 (the rows of the claims), on the same
world, stages, seeds and evaluation. The baseline, the shortcut floors and the backbone stage are
the full run's own cells, copied in (their fingerprints match, so nothing of them is retrained).

    python scripts/lfenet_lit_rate_round.py --run runs/reproduce/lfenet --out runs/reproduce/lfenet-lit-rate \\
        --cache runs/reproduce/cache --jobs 2

It writes the round's results.json / results.md / plots into ``--out`` as ``pyfacex reproduce`` does
(claims against the baseline, and T_tr = 3 against 1, both at the LIT's ×1 rate); a rerun skips the
finished cells.
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

from pyfacex.reproduce import get_spec, run_spec
from pyfacex.reproduce.spec import Variant, merge_recipes

LIT_SCALE = 1.0  # the round's one change: the LIT's rate as a multiple of the backbone's (20 in the spec)
ROWS = {"softmax_b_lit1": "softmax_b", "softmax_b_t1_lit1": "softmax_b_t1"}


def round_spec():
    """The lfenet spec with its LIT rows replaced by ROWS at the LIT rate LIT_SCALE × the backbone's."""
    spec = get_spec("lfenet")
    rows = {variant.name: variant for variant in spec.variants}
    variants = [rows["baseline"]]
    for name, original in ROWS.items():
        row = rows[original]
        variants.append(Variant(name, merge_recipes(row.recipe, {"optim": {"lr_scales": {"lit": LIT_SCALE}}}),
                                paper=row.paper, note=f"{row.note}; LIT at the backbone's rate (round)"))
    claims = []
    for claim in spec.claims:
        renamed = {original: name for name, original in ROWS.items()}
        claims.append(dataclasses.replace(claim, variant=renamed.get(claim.variant, claim.variant),
                                          baseline=renamed.get(claim.baseline, claim.baseline)))
    return dataclasses.replace(spec, name="lfenet-lit-rate", variants=tuple(variants), claims=tuple(claims),
                               description=__doc__.split("\n\n")[1].replace("\n", " "))


def reuse(run: Path, out: Path) -> None:
    """Copy the full run's stages, floors and baseline cells into ``out`` (skipped by fingerprint)."""
    for part in ("stages", "floors", "cells/baseline"):
        if (run / part).is_dir() and not (out / part).exists():
            shutil.copytree(run / part, out / part)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the finished `pyfacex reproduce lfenet` folder")
    parser.add_argument("--out", type=Path, required=True, help="the round's output folder")
    parser.add_argument("--cache", type=Path, required=True, help="the rendered worlds (the run's --cache)")
    parser.add_argument("--jobs", type=int, default=1, help="cells at once")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    reuse(args.run, args.out)
    run_spec(round_spec(), args.out, cache=args.cache, jobs=args.jobs,
             command="python scripts/lfenet_lit_rate_round.py " + " ".join(
                 f"--{k} {v}" for k, v in vars(args).items()))


if __name__ == "__main__":
    main()
