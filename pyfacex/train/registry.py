"""Trainers by the name ``Config.trainer`` gives."""
from __future__ import annotations

import importlib

from .config import Config

__all__ = ["TRAINERS", "create_trainer"]

TRAINERS = {
    "classification": ("classification", "ClassificationTrainer"),
    "sets": ("sets", "SetTrainer"),
    "qaface": ("qaface", "QAFaceTrainer"),
    "landmarks": ("landmarks", "LandmarkTrainer"),
    "fanface": ("fanface", "FANFaceTrainer"),
    "gan": ("gan", "GANTrainer"),
}
"""Trainer name -> (module of pyfacex.train, class)."""


def create_trainer(config: Config):
    """The trainer ``config.trainer`` names, built from ``config``."""
    if config.trainer not in TRAINERS:
        raise ValueError(f"trainer: expected one of {', '.join(TRAINERS)}, got {config.trainer!r}")
    module, name = TRAINERS[config.trainer]
    return getattr(importlib.import_module(f".{module}", __package__), name)(config)
