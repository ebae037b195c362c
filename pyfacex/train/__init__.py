"""Training: typed configs and recipes, trainers for the five systems, checkpoints, distributed runs.

    config = load_config("configs/synthetic_arcface.yaml", ["optim.lr=0.05"])
    create_trainer(config).fit()
"""
from .checkpoint import load_embedder, load_model, save_model
from .config import Config, ConfigError, config_from_dict, config_to_dict, load_config
from .registry import TRAINERS, create_trainer
from .trainer import Trainer

__all__ = ["Config", "ConfigError", "TRAINERS", "Trainer", "config_from_dict", "config_to_dict", "create_trainer",
           "load_config", "load_embedder", "load_model", "save_model"]
