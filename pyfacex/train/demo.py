"""The embedded demo: a synthetic face world → a small LGAF and an ArcFace baseline of the same backbone
trained on CPU → the synthetic LFW-like, pose-split (CFP-FP-like) and low-quality (TinyFace-like)
protocols → a results table and ROC curves.

Everything runs from nothing on disk in a few minutes on a 2-core CPU (``pyfacex demo``, ``make demo``).
The rendered data is kept in ``OUT/data`` and reused by a later run with the same settings; the two
recipes are written as ``OUT/<model>.yaml`` so ``pyfacex train OUT/lgaf.yaml`` repeats a run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.synthetic.rendered_data import render_data
from ..eval import ResultsTable, evaluate_protocol
from ..eval.summary import save_summary, summarize
from .checkpoint import load_embedder
from .config import Config, config_from_dict, config_to_yaml
from .registry import create_trainer

__all__ = ["DemoSettings", "demo_configs", "prepare_data", "protocol_writers", "run_demo"]


@dataclass(frozen=True)
class DemoSettings:
    """What the demo renders and trains (the defaults fit the 10-minute budget of a 2-core CPU).

    ``identities`` × ``per_identity`` training faces rendered at 112 with nuisance ``difficulty``,
    shrunk to ``image_size`` for training and testing; each protocol draws ``test_identities`` people
    disjoint from the training ones.
    Both models share the iResNet ``layers``/``widths`` and ``embedding_size``; ``epochs`` of
    ``batch_size`` with SGD at ``lr`` (one warm-up epoch, cosine decay).
    """

    seed: int = 0
    difficulty: float = 0.3
    identities: int = 400
    per_identity: int = 16
    test_identities: int = 200
    image_size: int = 64
    layers: tuple[int, ...] = (1, 1, 1, 1)
    widths: tuple[int, ...] = (16, 32, 64, 128)
    embedding_size: int = 128
    epochs: int = 6
    batch_size: int = 64
    lr: float = 0.1
    num_workers: int = 1


def protocol_writers(settings: DemoSettings) -> dict:
    """Protocol name -> [writer name, keyword arguments] (:mod:`pyfacex.data.synthetic.rendered_data`):
    the real protocols' layouts and fold structure (10 folds), scaled to ``test_identities`` people
    per protocol."""
    n = settings.test_identities
    per_fold = max(2, n // 10)
    return {
        "lfw": ["write_lfw_like", dict(folds=10, identities_per_fold=per_fold, pairs_per_fold=3 * per_fold,
                                       images_per_identity=4, seed=settings.seed)],
        "cfp-fp": ["write_cfp_fp_like", dict(folds=10, identities_per_fold=per_fold, pairs_per_fold=3 * per_fold,
                                             frontal_per_identity=4, profile_per_identity=2, seed=settings.seed)],
        "tinyface": ["write_tinyface_like", dict(identities=n, probes_per_identity=2, gallery_per_identity=2,
                                                 distractor_identities=n, distractors_per_identity=3,
                                                 seed=settings.seed)],
    }


PROTOCOL_FILES = {"lfw": "lfw/lfw.bin", "cfp-fp": "cfp-fp/cfp_fp.bin", "tinyface": "tinyface"}
"""Where each protocol's evaluation input lies under ``OUT/data/protocols``."""


def prepare_data(root: Path, settings: DemoSettings, progress: bool = True) -> Path:
    """Render the training set and the three protocols into ``root`` (skipped when ``root`` holds
    the data of the same settings, :func:`~pyfacex.data.synthetic.rendered_data.render_data`); returns ``root``."""
    return render_data(root, {
        "world": {"seed": settings.seed, "size": 112, "nuisance": {"difficulty": settings.difficulty}},
        "train": {"num_identities": settings.identities, "per_identity": settings.per_identity},
        "protocols": protocol_writers(settings)}, progress)


def demo_configs(data: Path, out: Path, settings: DemoSettings) -> dict[str, Config]:
    """The two recipes: "ArcFace" (the iResNet + ArcFace head) and "LGAF" (the same iResNet under
    GFE + MHMS + LGF, LGAF Sec. 3), trained alike."""
    backbone = {"layers": list(settings.layers), "widths": list(settings.widths),
                "num_features": settings.embedding_size, "input_size": settings.image_size}
    models = {"ArcFace": {"name": "iresnet50", "kwargs": backbone},
              "LGAF": {"name": "lgaf_r50", "kwargs": {"backbone_kwargs": backbone}}}
    configs = {}
    for name, model in models.items():
        configs[name] = config_from_dict({
            "model": model, "head": {"kind": "arcface"},
            "data": {"train": str(data / "train"), "batch_size": settings.batch_size,
                     "num_workers": settings.num_workers, "image_size": settings.image_size, "augment": ["flip"]},
            "optim": {"lr": settings.lr}, "schedule": {"kind": "cosine", "warmup_epochs": 1.0},
            "epochs": settings.epochs, "seed": settings.seed, "device": "cpu", "output": str(out / name.lower()),
            "log_every": 10})
    return configs


def run_demo(out: str | Path = "runs/demo", settings: DemoSettings = DemoSettings(), progress: bool = True,
             log=print) -> ResultsTable:
    """Render, train both models, evaluate them on the three protocols; print and save (``OUT/results.*``,
    ``OUT/roc_<protocol>.png``) the table, which is returned."""
    out = Path(out)
    started = time.perf_counter()
    log(f"[1/3] rendering the synthetic face world into {out / 'data'}")
    data = prepare_data(out / "data", settings, progress)
    rows, extra = {}, {}
    configs = demo_configs(data, out, settings)
    for k, (name, config) in enumerate(configs.items()):
        (out / f"{name.lower()}.yaml").write_text(config_to_yaml(config), encoding="utf-8")
        log(f"[2/3] training {name} ({k + 1}/{len(configs)}): {settings.identities} identities × "
            f"{settings.per_identity} faces, {settings.epochs} epochs")
        trainer = create_trainer(config)
        trainer.fit()
        embedder, _ = load_embedder(trainer.output / "model.pt")
        extra[name] = {"params (M)": sum(p.numel() for p in embedder.parameters()) / 1e6}
        rows[name] = [evaluate_protocol(f"{protocol}={data / 'protocols' / path}", embedder,
                                        image_size=settings.image_size, progress=progress)
                      for protocol, path in PROTOCOL_FILES.items()]
    log("[3/3] results")
    minutes = (time.perf_counter() - started) / 60
    table = summarize(rows, title=f"pyfacex demo: synthetic faces, {settings.image_size}×{settings.image_size}, "
                                  f"{minutes:.1f} min on {torch.get_num_threads()} CPU threads", extra=extra)
    log(table.to_text())
    written = save_summary(table, rows, out)
    log(f"wrote {', '.join(str(p) for p in written)}")
    return table
