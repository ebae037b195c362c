"""``pyfacex train CONFIG``: train from a recipe (YAML or Python), one process or many under torchrun.

    pyfacex train configs/synthetic_arcface.yaml --set optim.lr=0.05 --set epochs=4
    torchrun --nproc_per_node 8 -m pyfacex train configs/lgaf_r100_ms1mv2.yaml
    pyfacex train configs/lgaf_r100_ms1mv2.yaml --resume            # from OUTPUT/checkpoints/latest
"""
from __future__ import annotations

import sys

__all__ = ["add_parser", "run"]


def add_parser(commands) -> None:
    """Add ``train`` to the ``pyfacex`` sub-commands."""
    parser = commands.add_parser(
        "train", help="train a model from a recipe",
        description="Train from a recipe (configs/*.yaml or a Python file defining `config`); every value can "
                    "be overridden with --set KEY=VALUE (VALUE in YAML syntax). Logs go to OUTPUT/log.jsonl, "
                    "checkpoints to OUTPUT/checkpoints/, the model file to OUTPUT/model.pt. Run under torchrun "
                    "for several processes (DDP; PartialFC shards the classes).")
    parser.add_argument("config", metavar="CONFIG", help="recipe file (.yaml, .yml or .py)")
    parser.add_argument("--set", dest="overrides", metavar="KEY=VALUE", nargs="+", action="extend", default=[],
                        help="override values, e.g. --set optim.lr=0.05 data.augment=[flip] (repeatable)")
    parser.add_argument("--output", help="output folder (the recipe's `output` otherwise)")
    parser.add_argument("--resume", nargs="?", const="auto", metavar="CHECKPOINT",
                        help="resume from a checkpoint folder, or (without a value) from the latest in "
                             "OUTPUT/checkpoints")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.set_defaults(run=run)


def run(args) -> int:
    """Load the recipe with its overrides, train, and print where the model is."""
    from ..train import create_trainer, load_config
    from ..train.config import config_to_yaml

    overrides = list(args.overrides) + ([f"output={args.output}"] if args.output else [])
    config = load_config(args.config, overrides)
    if args.print_config:
        print(config_to_yaml(config), end="")
        return 0
    trainer = create_trainer(config)
    result = trainer.fit(resume=args.resume)
    if trainer.context.is_main:
        summary = ", ".join(f"{k} {v:.4g}" for k, v in result.items() if isinstance(v, float))
        print(f"trained {trainer.step} steps ({summary}); model: {trainer.output / 'model.pt'}", file=sys.stderr)
    return 0
