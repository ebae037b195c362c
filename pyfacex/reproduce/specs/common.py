"""What the recipes of every paper's reproduction share."""

ARCFACE_HEAD = {"kind": "arcface", "grad": "straight_through"}
"""The ArcFace head of every row (s = 64, m = 0.5) with insightface arcface_torch's straight-through
gradient (dφ/dcos θ = 1; :mod:`pyfacex.ops.margin`), the gradient of the code the papers' authors
started from. Changed after results: with the exact gradient of φ, two of four diagnostic trainings of
these tiny networks stalled on a loss plateau (LGAF's MHMS row, the QAFace baseline with Tab. 5's
augmentation: LFW-like 74.1 % and 84.7 % against 83.2 % and 93.6 % straight-through; the two healthy
ones moved by -3.4 and -0.3 points), see docs/reproductions/margin-gradient.md."""
