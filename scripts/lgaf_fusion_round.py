"""The documented round on LGAF's reproduction: where does the fusion lose to the GFE baseline?

Reads the trained models of a finished ``pyfacex reproduce lgaf`` run (``RUN/train/<row>/seed<k>/model.pt``)
and the rendered world they were evaluated on, and measures, per seed, on every evaluation of the spec:

- the LGAF model read four ways: κ (the model as trained: LGF's weighted sum, eq. 10), its own global
  feature Υ alone, its own local feature Ψ alone, and the plain sum Ψ + Υ (γ fixed at ½, what ADD
  would give with these very features);
- the GFE-only and ADD rows of the same seed, for reference;
- LGF's weights: the mean γˡ (eq. 9) and the mean norms ‖Ψ‖, ‖Υ‖ (the energy, eq. 4-5) over every
  image of a protocol (flipped copies included), so that clean and degraded protocols can be compared.

It prints a Markdown table and writes ``OUT/fusion_round.json`` seed by seed; a rerun skips the seeds
already there (about 10 minutes per seed on one core).

    python scripts/lgaf_fusion_round.py --run runs/reproduce/lgaf --out runs/reproduce/lgaf-round
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from pyfacex.data.synthetic.rendered_data import settings_key
from pyfacex.eval import evaluate_protocol
from pyfacex.reproduce.rounds import evaluation_scores
from pyfacex.reproduce.runner import EVALUATION_SEED
from pyfacex.reproduce.specs import get_spec
from pyfacex.train.checkpoint import load_model

READINGS = ("kappa", "global", "local", "plain_sum")


class LGAFReading(nn.Module):
    """One reading of a trained LGAF (module docstring), recording γˡ and both norms of every image it sees.

    Shapes: images (B, 3, H, W) -> (B, E).
    """

    def __init__(self, model: nn.Module, reading: str):
        super().__init__()
        self.model, self.reading = model, reading
        self.gamma_local: list[torch.Tensor] = []
        self.norms: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(images, return_details=True)
        self.gamma_local.append(out.gamma[:, 0].float())
        self.norms.append(torch.stack([out.local.norm(dim=1), out.global_.norm(dim=1)], dim=1).float())
        return {"kappa": out.embedding, "global": out.global_, "local": out.local,
                "plain_sum": out.local + out.global_}[self.reading]


def weights(spec, model: nn.Module, data: Path, image_size: int) -> dict[str, dict[str, float]]:
    """Mean γˡ, ‖Ψ‖ and ‖Υ‖ over the images of every evaluation of ``spec``."""
    out = {}
    for evaluation in spec.evaluations:
        reading = LGAFReading(model, "kappa").eval()
        path = data / "protocols" / evaluation.protocol / evaluation.file
        evaluate_protocol(f"{evaluation.name}={path}{evaluation.options}", reading, image_size=image_size,
                          seed=EVALUATION_SEED)
        gamma, norms = torch.cat(reading.gamma_local), torch.cat(reading.norms)
        out[evaluation.name] = {"gamma_local": gamma.mean().item(), "gamma_local_std": gamma.std().item(),
                                "norm_local": norms[:, 0].mean().item(), "norm_global": norms[:, 1].mean().item()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/reproduce/lgaf"), help="a finished reproduce lgaf run")
    parser.add_argument("--cache", type=Path, default=Path("runs/reproduce/cache"), help="the rendered worlds")
    parser.add_argument("--out", type=Path, default=Path("runs/reproduce/lgaf-round"))
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    args = parser.parse_args()
    spec = get_spec("lgaf")
    data = args.cache / settings_key(spec.world.data_settings())
    args.out.mkdir(parents=True, exist_ok=True)
    done = args.out / "fusion_round.json"
    results = {int(k): v for k, v in json.loads(done.read_text(encoding="utf-8")).items()} if done.is_file() else {}
    for seed in args.seeds:
        if seed in results:  # a rerun resumes: each seed's readings are written as it finishes
            continue
        lgaf, info = load_model(args.run / "train" / "lgaf" / f"seed{seed}" / "model.pt")
        size = info["image_size"]
        row = {reading: evaluation_scores(spec, LGAFReading(lgaf, reading).eval(), data, size) for reading in READINGS}
        for other in ("gfe", "add"):
            model, _ = load_model(args.run / "train" / other / f"seed{seed}" / "model.pt")
            row[other] = evaluation_scores(spec, model.eval(), data, size)
        results[seed] = {"metrics": row, "weights": weights(spec, lgaf, data, size)}
        print(f"seed {seed}: {json.dumps(results[seed])}", flush=True)
        done.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    names = [evaluation.name for evaluation in spec.evaluations]
    print("| reading | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for reading in (*READINGS, "gfe", "add"):
        means = [sum(results[s]["metrics"][reading][n] for s in results) / len(results) for n in names]
        print(f"| {reading} | " + " | ".join(f"{m:.1f}" for m in means) + " |")
    print("\n| protocol | mean γˡ | ‖Ψ‖ | ‖Υ‖ |\n|---|---|---|---|")
    for name in names:
        cells = [sum(results[s]["weights"][name][key] for s in results) / len(results)
                 for key in ("gamma_local", "norm_local", "norm_global")]
        print(f"| {name} | {cells[0]:.3f} | {cells[1]:.2f} | {cells[2]:.2f} |")


if __name__ == "__main__":
    main()
