"""The documented round on QAFace's reproduction: does f(ẑ) (QAFace eq. 11) single out the unrecognisable samples?

QAFace's memory stores f(ẑ)·x/‖x‖ of each training sample, with f = 0 for ẑ < −τ: samples whose feature norm
is far below the running mean write nothing (Sec. 3.5). On the reproduction's world a tenth of the training
images are rendered unrecognisable (extreme blur, an occluded inner face, 4 × 4 pixels) and the ground truth
says which. This script reads the trained QAFace models of a finished ``pyfacex reproduce qaface`` run
(``RUN/train/QAFace/seed<k>/``: its model file and last checkpoint), embeds every training image with the
momentum backbone (the features the memory stores), resized as the data loader resizes them and not
augmented, and computes ẑ with the model's final running μ and σ (eq. 8-10) and f with its τ. Per seed and
per kind of image (ordinary, and each kind of unrecognisable): the mean norm, the mean ẑ, the fraction with
f = 0 and the mean f; and how well the norm alone separates unrecognisable from ordinary images (ROC AUC).

What it does not see: the models as they were at each write (this is the final one) and the training-time
augmentation (random crop and down-sampling), which adds recognisable low-quality samples of its own.

    python scripts/qaface_quality_round.py --run runs/reproduce/qaface --out runs/reproduce/qaface-round
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from pyfacex.data.synthetic.rendered_data import settings_key
from pyfacex.data.synthetic.unrecognisable import UNRECOGNISABLE_KINDS
from pyfacex.eval import auc
from pyfacex.ops import qaface_weight, standardized_norm
from pyfacex.reproduce.specs import get_spec
from pyfacex.train.checkpoint import load_model
from pyfacex.train.data import open_dataset, resize_faces

KINDS = ("ordinary", *UNRECOGNISABLE_KINDS)


def final_state(run_dir: Path):
    """The momentum backbone (the model file's network with the last checkpoint's ``momentum_backbone.*``),
    the final [μ, σ + eps] of the norm statistics and τ of a QAFace training folder."""
    backbone, info = load_model(run_dir / "model.pt")  # the backbone alone, rebuilt from its name and kwargs
    latest = (run_dir / "checkpoints" / "latest").read_text(encoding="utf-8").strip()
    shared = torch.load(run_dir / "checkpoints" / latest / "shared.pt", weights_only=True, map_location="cpu")
    state = shared["modules"]["model"]
    prefix = "momentum_backbone."
    backbone.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    eps = 1e-3  # NormStats' default, which the QAFace head keeps
    stats = torch.stack([state["head.norm_stats.mean"], state["head.norm_stats.std"] + eps]).float()
    return backbone.eval(), info["image_size"], stats, shared["config"]["qaface"]["tau"]


@torch.no_grad()
def feature_norms(backbone, dataset, image_size: int, batch_size: int = 256) -> torch.Tensor:
    """‖x‖ (N,) of ``backbone``'s feature of every image of ``dataset``, in its order."""
    norms = []
    for start in range(0, len(dataset), batch_size):
        images = torch.stack([dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))])
        x = resize_faces(images, image_size).float().div_(255).sub_(0.5).div_(0.5)
        norms.append(torch.linalg.vector_norm(backbone(x).float(), dim=1))
    return torch.cat(norms)


def summarise(norms: torch.Tensor, codes: np.ndarray, stats: torch.Tensor, tau: float) -> dict:
    """Per kind: count, mean norm, mean ẑ, fraction with f = 0, mean f; and the norm's AUC for ordinary vs not."""
    z = standardized_norm(norms, stats[0], stats[1])
    f = qaface_weight(z, tau)
    codes_t = torch.from_numpy(codes)
    out = {"mu": stats[0].item(), "sigma": stats[1].item(), "tau": tau, "kinds": {}}
    for code, kind in enumerate(KINDS):
        mask = codes_t == code
        if mask.any():
            out["kinds"][kind] = {"count": int(mask.sum()), "norm": norms[mask].mean().item(),
                                  "z": z[mask].mean().item(), "ignored": (f[mask] == 0).float().mean().item(),
                                  "f": f[mask].mean().item()}
    # higher norm = ordinary: AUC 1 means the norm alone separates ordinary from unrecognisable images
    out["norm_auc"] = auc(norms, torch.from_numpy(codes == 0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/reproduce/qaface"),
                        help="a finished reproduce qaface run")
    parser.add_argument("--cache", type=Path, default=Path("runs/reproduce/cache"), help="the rendered worlds")
    parser.add_argument("--out", type=Path, default=Path("runs/reproduce/qaface-round"))
    parser.add_argument("--row", default="QAFace", help="the row whose models are read")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    args = parser.parse_args()
    spec = get_spec("qaface")
    train = args.cache / settings_key(spec.world.data_settings()) / "train"
    dataset = open_dataset(train)
    truth = np.load(train / "ground_truth.npz")
    codes = truth["unrecognisable"]
    if len(codes) != len(dataset):
        raise SystemExit(f"{train}: ground truth has {len(codes)} images, the record {len(dataset)}")
    args.out.mkdir(parents=True, exist_ok=True)
    done = args.out / "quality_round.json"
    results = json.loads(done.read_text(encoding="utf-8")) if done.is_file() else {}
    for seed in args.seeds:
        key = f"{args.row}/seed{seed}"
        if key in results:  # a rerun resumes
            continue
        backbone, image_size, stats, tau = final_state(args.run / "train" / args.row / f"seed{seed}")
        results[key] = summarise(feature_norms(backbone, dataset, image_size), codes, stats, tau)
        print(f"{key}: {json.dumps(results[key])}", flush=True)
        done.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("| seed | kind | images | mean ‖x‖ | mean ẑ | f = 0 | mean f |\n|---|---|---:|---:|---:|---:|---:|")
    for key, row in results.items():
        for kind, cell in row["kinds"].items():
            print(f"| {key} | {kind} | {cell['count']} | {cell['norm']:.2f} | {cell['z']:+.2f} | "
                  f"{100 * cell['ignored']:.1f} % | {cell['f']:.2f} |")
        print(f"| {key} | norm AUC, ordinary vs unrecognisable | | {row['norm_auc']:.3f} | | | |")


if __name__ == "__main__":
    main()
