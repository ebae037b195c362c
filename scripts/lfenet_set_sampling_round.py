"""The second documented round on LFENet's reproduction: does training on sets of 3 hurt without the LIT?

In the LIT-rate round (docs/reproductions/lfenet.md) SoftmaxB trained on sets of T_tr = 3 at the LIT's ×1
rate ended 30 points behind the baseline at FAR 1e-3, and 24 behind the same model trained on sets of one,
with weaker per-image embeddings too. Besides its LIT, the size-3 row differs from both in its batches: 16
sets of 3 images of one identity per step, where the baseline and the size-1 row draw 48 images of 46-48
identities. This round separates the two: the size-3 SoftmaxB row with its LIT frozen at the identity it
starts as (V = 0 at a rate of ×0, so A·v = 0 and the model is the backbone with its head), trained on the
same sets-of-3 batches, beside the spec's baseline row, on the same world, stage, seeds and evaluation.

    python scripts/lfenet_set_sampling_round.py --out runs/reproduce/lfenet-set-sampling --cache runs/reproduce/cache \\
        --jobs 2 [--run runs/reproduce/lfenet-lit-rate]

With ``--run`` (a finished folder of the spec, e.g. the LIT-rate round's) the backbone stage, the floors and
the baseline's cells are copied from it instead of retrained. It writes the round's results.json /
results.md / plots into ``--out`` as ``pyfacex reproduce`` does; a rerun skips the finished cells. Its
claim rows read: the frozen row against the baseline (what the sets-of-3 batches cost without a LIT).
"""
from __future__ import annotations

from pyfacex.reproduce.rounds import round_main

ROWS = {"softmax_b_lit0": "softmax_b"}
KEEP = ("baseline",)

if __name__ == "__main__":
    round_main(__doc__, "lfenet", "lfenet-set-sampling", {"optim": {"lr_scales": {"lit": 0.0}}}, ROWS, KEEP,
               "LIT frozen at the identity, sets-of-3 batches (round)")
