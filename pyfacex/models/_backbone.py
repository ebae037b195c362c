"""Backbones of the models: an iResNet by name, or a user's iResNet-like module."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..backbones import iresnet

BACKBONES = ("iresnet18", "iresnet34", "iresnet50", "iresnet100", "iresnet200", "irse50")
"""Names a model's ``backbone`` argument may take (pyfacex.backbones.iresnet's factories)."""


def build_backbone(backbone: nn.Module | str, kwargs: dict | None, role: str) -> nn.Module:
    """The backbone module: ``backbone`` built by name with ``kwargs``, or checked as given.

    A module must be iResNet-like (``bn2``, ``fc``, ``features`` and ``head(feature_map)``, and
    ``forward(x, return_feature_map=True)``), since the models reuse its head; ``role`` says what
    for, in the error.
    """
    if isinstance(backbone, str):
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be a module or one of {BACKBONES}, got {backbone!r}")
        return getattr(iresnet, backbone)(**(kwargs or {}))
    if not isinstance(backbone, nn.Module):
        raise TypeError(f"backbone must be an nn.Module or a name in {BACKBONES}, got {type(backbone).__name__}")
    if kwargs:
        raise ValueError(f"backbone_kwargs apply to a named backbone only, got {sorted(kwargs)} with a module")
    missing = [name for name in ("bn2", "fc", "features", "head") if not hasattr(backbone, name)]
    if missing:
        raise TypeError(f"backbone must be iResNet-like (bn2, fc, features, head(feature_map): {role}); "
                        f"{type(backbone).__name__} lacks {missing}")
    return backbone


def check_head_labels(head: nn.Module | None, labels: object, embeddings: torch.Tensor) -> None:
    """Raise ``ValueError`` unless the model has a ``head`` and ``labels`` is a (B,) tensor, one
    label per image of the (B, E) ``embeddings`` (the training call of every embedding model)."""
    if head is None:
        raise ValueError("labels were given but the model has no head: build it with num_classes > 0 or head=")
    if not isinstance(labels, torch.Tensor) or labels.shape != embeddings.shape[:1]:
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a ({embeddings.shape[0]},) tensor, one per image, got {got}")
