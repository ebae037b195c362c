"""The classification trainer: a model that embeds faces + a margin-softmax head (or PartialFC, or the
plain softmax of ``head.kind: softmax``).

``model.name`` is an iResNet (``iresnet50``, ...: plain ArcFace/CosFace/AdaFace training as
insightface arcface_torch) or a registered model that embeds images without labels (LGAF, FAN-Face:
``model(images)`` → (B, E)); the head comes from ``head`` and is trained beside it. With
``head.kind: partial_fc`` the class weights are sharded across the processes (each rank checkpoints
its shard) and the DDP gradients of the model are summed, since every rank's loss is the mean over
the global batch: a 2-process step then equals the 1-process step on the concatenated batch.
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn import PartialFC, create_head
from . import checkpoint as ckpt
from .data import mix_seed
from .distributed import wrap_ddp
from .trainer import Trainer

__all__ = ["ClassificationTrainer", "embedding_size", "init_class_weights"]

_BLOCK = 1024  # classes per independently seeded block of the initial class weights


@torch.no_grad()
def init_class_weights(weight: torch.Tensor, class_start: int, seed: int, std: float = 0.01) -> None:
    """Fill the rows of classes [class_start, class_start + len(weight)) with N(0, std²), each block
    of 1024 classes from its own seeded generator: the same values however the classes are sharded
    across ranks (so runs with different world sizes start alike)."""
    rows, dim = weight.shape
    first, last = class_start // _BLOCK, (class_start + rows - 1) // _BLOCK
    for block in range(first, last + 1):
        generator = torch.Generator().manual_seed(mix_seed(seed, block, 3))
        values = torch.randn(_BLOCK, dim, generator=generator).mul_(std)
        lo, hi = max(class_start, block * _BLOCK), min(class_start + rows, (block + 1) * _BLOCK)
        weight[lo - class_start:hi - class_start] = values[lo - block * _BLOCK:hi - block * _BLOCK].to(weight)


def embedding_size(model: nn.Module) -> int:
    """E of a model that embeds faces: its ``embedding_size`` or an iResNet's ``features`` width."""
    size = getattr(model, "embedding_size", None)
    if isinstance(size, int):
        return size
    features = getattr(model, "features", None)
    if isinstance(features, nn.BatchNorm1d):
        return features.num_features
    raise ValueError(f"cannot tell the embedding size of {type(model).__name__}: it has no int `embedding_size` "
                     "and no iResNet `features` layer")


class ClassificationTrainer(Trainer):
    """Backbone or embedding model + margin head, on shuffled image batches (see the module docstring)."""

    def __init__(self, config):
        self.local_modules = frozenset({"head"}) if config.head.kind == "partial_fc" else frozenset()
        super().__init__(config)

    def build_model(self) -> nn.Module:
        """The model of ``model.name`` / ``model.kwargs``, with ``model.weights`` loaded when given."""
        config = self.config.model
        if "num_classes" in config.kwargs or "head" in config.kwargs:
            raise ValueError("model.kwargs: the classification trainer adds the margin head from `head`; "
                             "remove num_classes/head from model.kwargs")
        return ckpt.build_trained_model(config, config.kwargs, trainer=self.config.trainer)

    def build_modules(self) -> dict[str, nn.Module]:
        model = self.build_model()
        head = create_head(self.config.head.kind, embedding_size(model), self.num_classes, **self.config.head.params)
        init_class_weights(head.weight, getattr(head, "class_start", 0), self.config.seed)
        return {"model": model, "head": head}

    def wrap_modules(self) -> dict[str, nn.Module]:
        partial = isinstance(self.modules["head"], PartialFC)
        unused = getattr(self.modules["model"], "branches", "both") == "mhms_only"  # LGAF Method I
        wrapped = {"model": wrap_ddp(self.modules["model"], self.context, sum_gradients=partial,
                                     find_unused_parameters=unused)}
        wrapped["head"] = self.modules["head"] if partial else wrap_ddp(self.modules["head"], self.context)
        return wrapped

    def forward_loss(self, batch) -> dict[str, torch.Tensor]:
        images, labels = batch
        embeddings = self.wrapped["model"](images)
        return {"loss": self.wrapped["head"](embeddings, labels)}
