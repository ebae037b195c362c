"""The documented round on LFENet's reproduction: is the LIT's learning rate what sinks the LIT rows?

The full run (docs/reproductions/lfenet.md) trains the LIT and the classifier at 20× the backbone's
rate (0.1 against 0.005: the paper's higher LIT rate, Sec. IV-B). Every LIT row ended far below the
baseline, the size-1 row too, whose LIT only relates the local features of one image; the trained
LIT's output A·v was 8 to 17 times the norm of the feature map it is added to (eq. 5), so the refined
maps are mostly the LIT's. This round changes that one setting: the LIT at the backbone's rate (×1,
the classifier still at ×20), for SoftmaxB at T_tr = 3 and 1 (the rows of the claims), on the same
world, stages, seeds and evaluation, beside the spec's baseline row.

    python scripts/lfenet_lit_rate_round.py --out runs/reproduce/lfenet-lit-rate --cache runs/reproduce/cache \\
        --jobs 2 [--run runs/reproduce/lfenet]

With ``--run`` (a finished ``pyfacex reproduce lfenet`` folder) the backbone stage, the floors and the
baseline's cells are copied from it instead of retrained. It writes the round's results.json /
results.md / plots into ``--out`` as ``pyfacex reproduce`` does (claims against the baseline, and
T_tr = 3 against 1, both at the LIT's ×1 rate); a rerun skips the finished cells.
"""
from __future__ import annotations

from pyfacex.reproduce.rounds import round_main

LIT_SCALE = 1.0
"""The round's one change: the LIT's rate as a multiple of the backbone's (20 in the spec)."""
ROWS = {"softmax_b_lit1": "softmax_b", "softmax_b_t1_lit1": "softmax_b_t1"}
KEEP = ("baseline",)

if __name__ == "__main__":
    round_main(__doc__, "lfenet", "lfenet-lit-rate", {"optim": {"lr_scales": {"lit": LIT_SCALE}}}, ROWS, KEEP,
               "LIT at the backbone's rate (round)")
