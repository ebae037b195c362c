"""The documented round on FAN-Face's reproduction: does the trained FAN-Face use what its FAN tells it?

In the full run (docs/reproductions/fanface.md) no FAN-Face row separated from ArcFace: the paper's best
(H2,1-1,BL,h2l-2) ended 0.5 points behind on CFP-FP-like and 1.2 on LFW-like pairs. This round asks
whether the recognition network relies on its landmark network at all. It trains the spec's ArcFace and
H2,1-1,BL,h2l-2 rows again, unchanged (same world, FAN stage, seeds and evaluation), and then evaluates
each trained FAN-Face model four ways: as trained (each face with its own FAN outputs), and with the FAN
outputs of another face of the evaluation batch (the batch rolled by half its size, so a face of another
identity and pose) in place of its own: heatmaps and features, the heatmaps only (eq. 1's stacked input),
the features only (eq. 2's integration). The swapped outputs are real FAN outputs, so what the network
sees stays in distribution; only their agreement with the face is gone.

Reading it: if accuracy holds when the outputs are swapped, the network has not learnt to use where the
landmarks are, and a better FAN or another world would add nothing until it does (the training's scale);
if it falls, the network relies on its FAN, and its gain over ArcFace is limited by what the FAN tells it
beyond what the FRN learns alone.

    python scripts/fanface_fan_use_round.py --out runs/reproduce/fanface-fan-use --cache runs/reproduce/cache --jobs 2

It writes the training's results.json / results.md as ``pyfacex reproduce`` does, and the readings to
``OUT/fan_use.json`` seed by seed (a rerun skips what is done), and prints them as Markdown tables.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn

from pyfacex.backbones.fan import FANOutput
from pyfacex.data.synthetic.rendered_data import settings_key
from pyfacex.reproduce import get_spec, run_spec
from pyfacex.reproduce.rounds import cell_scores, evaluation_scores, round_spec
from pyfacex.reproduce.specs.fanface import BEST
from pyfacex.train.checkpoint import load_model

READINGS = {"own": (False, False), "swapped": (True, True), "swapped heatmaps": (True, False),
            "swapped features": (False, True)}
"""Reading -> (swap the heatmaps, swap the hourglass features)."""


def _rolled(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.roll(len(tensor) // 2, dims=0)


class SwappedFAN(nn.Module):
    """A trained FAN-Face model whose faces get the FAN outputs of other faces of their batch (the batch
    rolled by half its size): the heatmaps, the features, or both (module docstring).

    Shapes: images (B, 3, H, W) -> embeddings (B, E).
    """

    def __init__(self, model: nn.Module, heatmaps: bool, features: bool):
        super().__init__()
        self.model, self.heatmaps, self.features = model, heatmaps, features

    def _landmark_outputs(self, images: torch.Tensor) -> FANOutput:
        out = type(self.model).landmark_outputs(self.model, images)
        roll_features = _rolled if self.features else (lambda t: t)
        return FANOutput(heatmaps=[_rolled(h) if self.heatmaps else h for h in out.heatmaps],
                         high_to_low=[[roll_features(t) for t in hourglass] for hourglass in out.high_to_low],
                         low_to_high=[[roll_features(t) for t in hourglass] for hourglass in out.low_to_high])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.model.landmark_outputs = self._landmark_outputs  # the instance's method, for this call only
        try:
            return self.model(images)
        finally:
            del self.model.landmark_outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the round's output folder")
    parser.add_argument("--cache", type=Path, required=True, help="the rendered worlds (a run's --cache)")
    parser.add_argument("--jobs", type=int, default=1, help="cells at once")
    args = parser.parse_args()
    spec = round_spec(get_spec("fanface"), "fanface-fan-use", {}, {}, ("ArcFace", BEST), "",
                      __doc__.split("\n\n")[1].replace("\n", " "))
    run_spec(spec, args.out, cache=args.cache, jobs=args.jobs,
             command=" ".join(["python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]]))

    data = args.cache / settings_key(spec.world.data_settings())
    done = args.out / "fan_use.json"
    results = {int(k): v for k, v in json.loads(done.read_text(encoding="utf-8")).items()} if done.is_file() else {}
    for seed in range(spec.seeds):
        if seed in results:
            continue
        model, info = load_model(args.out / "train" / BEST / f"seed{seed}" / "model.pt")
        model.eval()
        results[seed] = {reading: evaluation_scores(spec, SwappedFAN(model, *swaps).eval(), data, info["image_size"])
                         for reading, swaps in READINGS.items()}
        results[seed]["cell"] = cell_scores(args.out, BEST, seed)
        results[seed]["ArcFace"] = cell_scores(args.out, "ArcFace", seed)
        print(f"seed {seed}: {json.dumps(results[seed])}", flush=True)
        done.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    names = [evaluation.name for evaluation in spec.evaluations]
    rows = ("ArcFace", "cell", *READINGS)
    print("| reading | " + " | ".join(f"{n} seed {s}" for n in names for s in sorted(results)) + " | "
          + " | ".join(f"{n} mean" for n in names) + " |")
    print("|---|" + "---|" * (len(names) * (len(results) + 1)))
    for row in rows:
        per_seed = [f"{results[s][row][n]:.1f}" for n in names for s in sorted(results)]
        means = [f"{sum(results[s][row][n] for s in results) / len(results):.1f}" for n in names]
        print(f"| {row} | " + " | ".join(per_seed + means) + " |")


if __name__ == "__main__":
    main()
