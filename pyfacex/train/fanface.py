"""The FAN-Face trainer: classification (ArcFace by default) of a FAN-Face model whose FAN is trained
landmark weights, kept frozen (FAN-Face Sec. 4: "FAN remained fixed for the whole training").

``model.name`` is a registered ``fanface_*`` variant; ``model.kwargs.fan_weights`` names the FAN:
the ``model.pt`` of a ``landmarks`` run (:class:`~pyfacex.train.landmarks.LandmarkTrainer`) or
face-alignment's 2DFAN4 state_dict. ``model.kwargs.fan_stacks`` (optional) keeps only the first
stacks of it (the paper uses 2, face-alignment publishes 4: :func:`pyfacex.backbones.fan.truncate_stacks`).
Both keys are popped from a copy of the kwargs; the rest go to the model.

The FAN's parameters have ``requires_grad=False`` (FANFace freezes them), so the base optimiser,
which takes only parameters that require gradients, never sees them; FANFace keeps the FAN in eval
mode, so its BatchNorm statistics do not move either.

``model.name: fanface_r34_multitask`` trains the multi-task baseline of Tab. 1 (AS7): the loss is the
margin head's plus ``heatmap_loss_weight`` (model kwarg, 0.1) × the L2 loss of the heatmap head after
layer 4 against the frozen FAN's heatmaps, logged as ``heatmap_loss``.

The model file stores ``fan_kwargs`` (the FAN's architecture, plain data) in place of
``fan_weights``: ``build_model(name, kwargs)`` rebuilds a FAN of that shape and the file's
state_dict (which holds ``fan.*``) fills in the trained weights, so the file stands alone.
"""
from __future__ import annotations

import torch
from torch import nn

from ..backbones.fan import FAN, truncate_stacks
from ..models.fanface import FANFace
from . import checkpoint as ckpt
from .classification import ClassificationTrainer
from .landmarks import fan_kwargs_of, load_fan

__all__ = ["FANFaceTrainer", "MISSING_FAN"]

MISSING_FAN = ("FAN-Face needs trained landmark weights: model.kwargs.fan_weights = the model.pt of a `landmarks` "
               "run or face-alignment's 2DFAN4 checkpoint")
_FAN_KEYS = ("fan_weights", "fan_stacks")


class FANFaceTrainer(ClassificationTrainer):
    """A :class:`ClassificationTrainer` of a ``fanface_*`` model with its frozen FAN loaded from
    ``model.kwargs.fan_weights`` (see the module docstring)."""

    def build_model(self) -> nn.Module:
        """The FAN-Face model of ``model.name`` with the FAN of ``fan_weights`` (``model.weights``, a
        FAN-Face model file, loaded over the whole model when given)."""
        config = self.config.model
        kwargs = dict(config.kwargs)
        path, stacks = kwargs.pop("fan_weights", None), kwargs.pop("fan_stacks", None)
        if not path:
            raise ValueError(MISSING_FAN)
        for key in ("fan", "fan_kwargs", "num_classes", "head"):
            if key in kwargs:
                raise ValueError(f"model.kwargs.{key}: the FAN-Face trainer builds the FAN from fan_weights and "
                                 "adds the margin head from `head`; remove it")
        fan = _with_stacks(load_fan(path, "model.kwargs.fan_weights"), stacks)
        return ckpt.build_trained_model(config, {**kwargs, "fan": fan}, FANFace, "fanface")

    def forward_loss(self, batch) -> dict[str, torch.Tensor]:
        """The margin-head loss; for the multi-task baseline (AS7) plus the weighted heatmap L2 loss."""
        model = self.modules["model"]
        if not model.config.multitask:
            return super().forward_loss(batch)
        images, labels = batch
        embeddings, heatmap_loss = self.wrapped["model"](images, return_heatmap_loss=True)
        loss = self.wrapped["head"](embeddings, labels) + model.heatmap_loss_weight * heatmap_loss
        return {"loss": loss, "heatmap_loss": heatmap_loss.detach()}

    def export(self) -> tuple[str, dict, nn.Module]:
        """(name, kwargs with ``fan_kwargs`` for ``fan_weights``/``fan_stacks``, the model)."""
        model = self.modules["model"]
        kwargs = {k: v for k, v in self.config.model.kwargs.items() if k not in _FAN_KEYS}
        return self.config.model.name, {**kwargs, "fan_kwargs": fan_kwargs_of(model.fan)}, model


def _with_stacks(fan: FAN, stacks) -> FAN:
    """``fan`` cut to its first ``stacks`` hourglasses (None: as it is)."""
    if stacks is None or stacks == fan.num_stacks:
        return fan
    if isinstance(stacks, bool) or not isinstance(stacks, int) or not 1 <= stacks <= fan.num_stacks:
        raise ValueError(f"model.kwargs.fan_stacks: expected an int in 1..{fan.num_stacks} (the stacks of "
                         f"fan_weights), got {stacks!r}")
    cut = FAN(**{**fan_kwargs_of(fan), "num_stacks": stacks})
    ckpt.load_state_dict_checked(cut, truncate_stacks(fan.state_dict(), stacks), "model.kwargs.fan_stacks")
    return cut
