"""``_micro``: the smallest experiment the runner can run (seconds), for the tests and for trying the
command: a 32-pixel world of 6 identities × 4 faces, one protocol evaluated clean and at 16 px, a
pre-trained extractor stage and two variants (ArcFace from scratch; CosFace fine-tuned from the stage) of a
tiny iResNet trained for a few steps. Its "paper" numbers are illustrative reference values, not a paper's."""
from ..spec import Claim, Evaluation, ExperimentSpec, Metric, Protocol, Stage, Variant, World

TINY_IRESNET = {"layers": [1, 1, 1, 1], "widths": [8, 8, 16, 16], "num_features": 16, "input_size": 32}

_RECIPE = {
    "model": {"name": "iresnet50", "kwargs": TINY_IRESNET},
    "head": {"kind": "arcface"},
    "data": {"batch_size": 8, "num_workers": 0, "image_size": 32, "augment": []},
    "optim": {"lr": 0.1},
    "schedule": {"kind": "cosine"},
    "epochs": 2,
    "device": "cpu",
    "log_every": 1,
}

SPEC = ExperimentSpec(
    name="_micro",
    paper="micro (the runner's own test)",
    description="A 32×32 world of 6 identities × 4 faces; a tiny iResNet for 2 epochs of 3 steps.",
    world=World(identities=6, per_identity=4, size=32, difficulty=0.2, protocols={
        "lfw": Protocol("write_lfw_like", {"folds": 2, "identities_per_fold": 4, "pairs_per_fold": 8,
                                           "images_per_identity": 3}),
    }),
    evaluations=(Evaluation("lfw", "lfw"),
                 Evaluation("lfw@16px", "lfw", options="@16px")),
    metrics=(Metric("LFW", "lfw", "accuracy"), Metric("LFW AUC", "lfw", "auc"),
             Metric("LFW@16px", "lfw@16px", "accuracy"), Metric("LFW EER", "lfw", "eer", higher_is_better=False)),
    recipe=_RECIPE,
    stages=(Stage("extractor", {**_RECIPE, "data": {**_RECIPE["data"], "train": "$train"}, "epochs": 1},
                  quick={"max_steps": 1}),),
    variants=(
        Variant("arcface", paper={"LFW": 99.0, "LFW@16px": 80.0}),
        Variant("finetuned", {"model": {"weights": "$stage:extractor"}, "head": {"kind": "cosface"},
                              "optim": {"lr": 0.01}}, paper={"LFW": 99.2, "LFW@16px": 82.0}),
    ),
    claims=(Claim("finetuned", "arcface", "LFW@16px"),
            Claim("finetuned", "arcface", "LFW", direction=">=", margin=1.0),
            Claim("finetuned", "arcface", "LFW EER")),
    seeds=2,
    quick_seeds=1,
    quick={"epochs": 1},
    pilot_worlds={"easier": {"difficulty": 0.1}, "harder": {"difficulty": 0.4, "nuisance": {"blur": 4.0}}},
)
