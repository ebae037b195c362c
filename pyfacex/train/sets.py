"""The set trainer of LFENet (Sec. III-B): batches of b sets × T images of one identity,
LIT within each set, and the margin loss on every image embedding.

"b image sets which contain T_tr images in each are randomly chosen in a batch, thus each batch
contains B = b × T_tr images" (``data.sets_per_batch`` = b, ``data.set_size`` = T): the sets come from
:class:`pyfacex.data.SetSampler`, dealt so that a batch's sets have distinct identities, sharded
across ranks. The model (``lfenet_irse50`` ...) embeds a packed batch of sets, ``model(images,
offsets)`` → (b·T, E), and the head of ``head`` takes every image (default ArcFace; the paper's
plain softmax, "we simply use the softmax function" (LFENet, Sec. IV-B), is ``head.kind: softmax``).
"""
from __future__ import annotations

import torch

from ..data import SetSampler
from .classification import ClassificationTrainer
from .data import AugmentCollate, build_augment

__all__ = ["SetTrainer"]


class SetTrainer(ClassificationTrainer):
    """LFENet training on b × T set batches (see the module docstring); otherwise as
    :class:`~pyfacex.train.classification.ClassificationTrainer` (heads, PartialFC, DDP)."""

    def build_data(self) -> None:
        data = self.config.data
        self.open_training_set()
        sampler = SetSampler(self.dataset.labels, data.sets_per_batch, data.set_size, seed=self.config.seed,
                             drop_last=True, rank=self.context.rank, world_size=self.context.world_size)
        self._make_loader(sampler, AugmentCollate(data.image_size, build_augment(data.augment), data.set_size),
                          data.sets_per_batch * data.set_size)

    def forward_loss(self, batch) -> dict[str, torch.Tensor]:
        images, labels, offsets = batch
        embeddings = self.wrapped["model"](images, offsets)  # LIT within each set, eq. 5
        return {"loss": self.wrapped["head"](embeddings, labels)}  # on every image (Sec. III-D)
