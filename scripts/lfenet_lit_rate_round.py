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
T_tr = 3 against 1, both at the LIT's ×1 rate); a rerun skips the finished cells. Then it reads every
trained LIT row seed by seed into ``OUT/lit_readings.json`` (a rerun skips what is done) and prints them
as a Markdown table: the cell's own score (the LIT's set function, eq. 5 within each template); the
template mean of its per-image embeddings (each image a set of one); and ‖A·v‖ / ‖x‖, the norm of eq. 5's
added term against the feature map it is added to (median over the images of 40 training identities,
in sets of 3 and of 1, eval mode), with the Frobenius norm of the query projection.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from pyfacex.data import RecordDataset
from pyfacex.reproduce.rounds import cell_scores, evaluation_scores, round_main
from pyfacex.reproduce.spec import ExperimentSpec
from pyfacex.train.checkpoint import embedder_for, load_model
from pyfacex.train.data import resize_faces

LIT_SCALE = 1.0
"""The round's one change: the LIT's rate as a multiple of the backbone's (20 in the spec)."""
ROWS = {"softmax_b_lit1": "softmax_b", "softmax_b_t1_lit1": "softmax_b_t1"}
KEEP = ("baseline",)
RATIO_IDENTITIES, RATIO_SET_SIZES = 40, (3, 1)


def lit_output_ratio(model: torch.nn.Module, images: torch.Tensor, set_size: int) -> float:
    """Median over ``images`` (B, 3, H, W) in [-1, 1] of ‖A·v‖ / ‖x‖: the LIT's added term (eq. 5) against
    the backbone's feature map x it is added to, the images taken as consecutive sets of ``set_size``
    (B a multiple of it), in the model's current mode."""
    if len(images) % set_size:
        raise ValueError(f"images: expected a multiple of set_size={set_size} images, got {len(images)}")
    offsets = torch.arange(len(images) // set_size + 1) * set_size
    with torch.no_grad():
        x = model.backbone(images, return_feature_map=True)
        added = model.lit(x, offsets) - x
    return (added.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)).median().item()


@functools.cache
def ratio_images(data: Path, image_size: int) -> torch.Tensor:
    """The first 3 training images of each of the first RATIO_IDENTITIES identities of the rendered world
    ``data``, identity by identity, at ``image_size`` in [-1, 1] as the trainer feeds them (read once
    for every row and seed)."""
    dataset = RecordDataset(data / "train")
    labels = dataset.labels
    picks = torch.cat([torch.nonzero(labels == label).flatten()[:3] for label in labels.unique()[:RATIO_IDENTITIES]])
    images = torch.stack([dataset[int(i)][0] for i in picks])
    return resize_faces(images, image_size).float().div(127.5).sub(1.0)


def lit_readings(spec: ExperimentSpec, out: Path, data: Path) -> None:
    """The readings of every trained LIT row (module docstring) into ``out / "lit_readings.json"``."""
    done = out / "lit_readings.json"
    readings = json.loads(done.read_text(encoding="utf-8")) if done.is_file() else {}
    for row in ROWS:
        for seed in map(str, range(spec.seeds)):
            if seed in readings.get(row, {}):
                continue
            model, info = load_model(out / "train" / row / f"seed{seed}" / "model.pt")
            images = ratio_images(data, info["image_size"])
            reading = {"cell": cell_scores(out, row, seed),
                       "template mean": evaluation_scores(spec, embedder_for(model), data, info["image_size"]),
                       **{f"lit/map T={t}": lit_output_ratio(model, images, t) for t in RATIO_SET_SIZES},
                       "|W_q|": model.lit.query.weight.norm().item()}
            readings.setdefault(row, {})[seed] = reading
            print(f"{row}, seed {seed}: {json.dumps(reading)}", flush=True)
            done.write_text(json.dumps(readings, indent=2) + "\n", encoding="utf-8")

    names = [evaluation.name for evaluation in spec.evaluations]
    columns = [(kind, name) for kind in ("cell", "template mean") for name in names]
    columns += [(f"lit/map T={t}", None) for t in RATIO_SET_SIZES] + [("|W_q|", None)]
    print("| row (seeds in order) | " + " | ".join(f"{kind} {name or ''}".strip() for kind, name in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for row, seeds in readings.items():
        values = [" / ".join(f"{seeds[s][kind][name] if name else seeds[s][kind]:.2f}" for s in sorted(seeds))
                  for kind, name in columns]
        print(f"| {row} | " + " | ".join(values) + " |")

if __name__ == "__main__":
    round_main(__doc__, "lfenet", "lfenet-lit-rate", {"optim": {"lr_scales": {"lit": LIT_SCALE}}}, ROWS, KEEP,
               "LIT at the backbone's rate (round)", after=lit_readings)
