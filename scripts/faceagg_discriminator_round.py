"""The documented round on the Face Aggregation Network's reproduction: does the discriminator's rate
make a seed collapse?

In the full run (docs/reproductions/faceagg.md) one seed of three (seed 1) ended at the shortcut floors in
both rows trained with L_adv, and not in the row without it: at that seed the discriminator won outright
(its loss 0.04, D(fake) 0.02) and the aggregate turned to high-frequency texture. The spec scaled the
paper's rate (5e-5, generator and discriminator alike) up 4× to 2e-4 for its 900 steps. This round changes
one setting: the discriminator's rate back to the paper's 5e-5, the aggregator's left at 2e-4, for the full
aggregator row; beside it the spec's own rows *avg* (the claim's baseline) and *faceagg* (retrained, so
the change is compared seed by seed within one run), on the same world, extractor stage, seeds and
evaluation. The round's claim is the spec's, on its row: the aggregator degrades less than averaging
under blur. The spec's row *no_adv* (without L_adv) was added after the first results, for its training
log: whether, at the collapsing seed, it goes through the same early rise of the aggregate's total
variation as the rows trained with L_adv, and recovers.

    python scripts/faceagg_discriminator_round.py --out runs/reproduce/faceagg-d-rate --cache runs/reproduce/cache \\
        --jobs 2 [--run runs/reproduce/faceagg]

With ``--run`` (a finished ``pyfacex reproduce faceagg`` folder) the extractor stage, the floors and the
kept rows' cells are copied from it instead of retrained; a rerun skips the finished cells.
"""
from __future__ import annotations

from pyfacex.reproduce.rounds import round_main

D_LR = 5.0e-5
"""The round's one change: the discriminator's rate (2e-4 in the spec), the paper's (Sec. 4.1)."""
ROWS = {"faceagg_d5e-5": "faceagg"}
KEEP = ("avg", "faceagg", "no_adv")

if __name__ == "__main__":
    round_main(__doc__, "faceagg", "faceagg-d-rate", {"gan": {"d_lr": D_LR}}, ROWS, KEEP,
               f"the discriminator at {D_LR:g} (round)")
