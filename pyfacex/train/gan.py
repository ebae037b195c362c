"""The GAN trainer of the Face Aggregation Network (Face Aggregation Network Sec. 3-4).

Recipe (Sec. 4.1): the aggregator (generator) is trained with L_G of eq. 5 (λ_dis = λ_adv = 1,
λ_rec = 0.5, λ_tv = 1e-4, L_rec^cen of eq. 9-10) and the discriminator with L_adv^D of eq. 12,
alternately, both with Adam; lr 5e-5, ×0.25 after 3 of 6 epochs; batches of 6 sets of N = 10 frames;
flip, photometric and motion-blur augmentation. As a config::

    trainer: gan
    model: {name: faceagg_unet, kwargs: {extractor: runs/arcface_r50/model.pt}}
    data: {train: /data/vox2, sets_per_batch: 6, set_size: 10, augment: [flip, photometric, motion_blur]}
    optim: {name: adam, lr: 5.0e-5, weight_decay: 0.0}
    gan: {d_lr: 5.0e-5, d_steps: 1}
    schedule: {kind: step, milestones: [3], gamma: 0.25}
    epochs: 6

* Batches: :class:`~pyfacex.train.set_batches.SetTripletSampler` (b sets of N frames of one video,
  a positive from another video of the identity and a negative per set), ``data.sets_per_batch`` = b,
  ``data.set_size`` = N. The video ids come from the training set (``root/<identity>/<video>/<frame>``
  folders, or RecordIO's second float label); without them the sampler warns and takes P
  outside the set.
* The feature extractor F is pretrained and frozen: ``model.kwargs.extractor`` is a pyfacex model file
  (e.g. the ``model.pt`` of a classification run); its embedder (:func:`~.checkpoint.load_embedder`)
  becomes the FaceAggregation's ``extractor`` (eval mode, no gradient, in no optimiser).
* One step: a G step (L_G → the "generator" Adam over the aggregator), then ``gan.d_steps`` D steps
  on the same A, detached (L_adv^D → the "discriminator" Adam, lr ``gan.d_lr``, betas ``gan.betas``).
  Both follow ``schedule``; the discriminator's schedule counts its own steps, d_steps per G step.
* Gradient accumulation is not supported (``grad_accum`` > 1 raises): the D steps need the A of
  every micro-batch after the G step, and the paper's batches (60 frames) fit without it.
"""
from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn

from ..models.face_aggregation import FaceAggregation
from . import checkpoint as ckpt
from .data import build_augment
from .distributed import wrap_ddp
from .optim import build_optimizer, build_scheduler, check_lr_scales, scaled_groups
from .set_batches import SetTripletCollate, SetTripletSampler
from .trainer import Trainer

__all__ = ["GANTrainer", "export_kwargs", "MISSING_EXTRACTOR"]

MISSING_EXTRACTOR = ("the Face Aggregation Network needs a pretrained feature extractor: model.kwargs.extractor = "
                     "a pyfacex model file, e.g. the model.pt of a classification run")


class _LossCall(nn.Module):
    """Runs one loss method of a FaceAggregation as ``forward``, so that DDP, which synchronises the
    gradients of what runs through its forward, can wrap the G and the D step separately."""

    def __init__(self, model: FaceAggregation, method: str):
        super().__init__()
        self.model, self.method = model, method

    def forward(self, *args):
        return getattr(self.model, self.method)(*args)


def _wrap_loss(model: FaceAggregation, method: str, trained: str, context) -> nn.Module:
    """``model.<method>`` behind DDP over the parameters of ``model.<trained>`` only (the others are
    frozen or belong to the other step; no buffer is broadcast: the extractor's are frozen and alike,
    the model keeps its centres equal across ranks itself, see :class:`GANTrainer`)."""
    call = _LossCall(model, method)
    keep = f"model.{trained}."
    ignore = [n for n, _ in call.named_parameters() if not n.startswith(keep)] + [n for n, _ in call.named_buffers()]
    return wrap_ddp(call, context, ignore=ignore)


def export_kwargs(kwargs: dict, extractor_spec: dict) -> dict:
    """The ``kwargs`` of the model file: the model's keywords as built (num_classes, embedding_size,
    input_size filled in) with ``extractor: {"embedder_of": extractor_spec}`` ({"name", "kwargs"} of
    the extractor's model file), which :func:`pyfacex.train.checkpoint.build_model` rebuilds; the
    extractor's weights are in the file's state_dict with the rest of the network."""
    return {**{k: v for k, v in kwargs.items() if k != "extractor"},
            "extractor": {"embedder_of": {"name": extractor_spec["name"], "kwargs": extractor_spec["kwargs"]}}}


class GANTrainer(Trainer):
    """Trains the Face Aggregation Network (see the module docstring), registered as ``gan``.

    Modules: ``model`` (the FaceAggregation: aggregator, discriminator, frozen extractor, the centre
    buffers of L_rec^cen). Optimisers: ``generator`` (``optim`` over the aggregator) and
    ``discriminator`` (Adam over the discriminator, lr ``gan.d_lr``, betas ``gan.betas``, the
    ``optim`` weight decay and eps). ``gan.d_steps`` >= 0 D steps per G step (0: the discriminator
    stays as initialised; L_adv^G still uses it).

    Distributed: the G and D steps each run behind their own DDP, over the aggregator's and the
    discriminator's parameters respectively; every rank's loss is the mean over its b sets, so the
    averaged gradients are those of the mean over all ranks' sets. The centres (eq. 10) are updated
    inside ``FaceAggregation.generator_loss`` from the sets of every rank (all-gathered, applied in
    rank order), so they stay equal across ranks without DDP broadcasting them.

    Evaluation during training (``eval.protocols``) embeds faces with :meth:`embedder`, the frozen
    extractor: those numbers measure the extractor, not the aggregator, and do not change during
    training. Evaluate the aggregator on sets with :func:`pyfacex.eval.embed_sets` /
    ``evaluate_ytf`` (``FaceAggregation.embed``) on the exported model.
    """

    def __init__(self, config):
        if config.grad_accum != 1:
            raise ValueError(f"grad_accum: the gan trainer does not accumulate gradients (each D step trains on "
                             f"the A of its G step), expected 1, got {config.grad_accum}; raise "
                             "data.sets_per_batch instead")
        gan = config.gan
        if isinstance(gan.d_steps, bool) or not isinstance(gan.d_steps, int) or gan.d_steps < 0:
            raise ValueError(f"gan.d_steps: expected an int >= 0, got {gan.d_steps!r}")
        if not gan.d_lr > 0:
            raise ValueError(f"gan.d_lr: expected a learning rate > 0, got {gan.d_lr!r}")
        if len(gan.betas) != 2:
            raise ValueError(f"gan.betas: expected two values, got {gan.betas}")
        super().__init__(config)
        if gan.d_steps > 1:  # the discriminator's schedule in its own steps: the same epoch fractions
            self.schedulers["discriminator"] = build_scheduler(
                self.optimizers["discriminator"], self.total_steps * gan.d_steps,
                self.steps_per_epoch * gan.d_steps, config.schedule)

    # ------------------------------------------------------------------ data and modules

    def build_data(self) -> None:
        """Set batches of b sets of N frames, their positives and negatives (:mod:`.set_batches`)."""
        data = self.config.data
        self.open_training_set()
        sampler = SetTripletSampler(self.dataset.labels, data.sets_per_batch, data.set_size, self.config.seed,
                                    videos=self.dataset.videos, rank=self.context.rank,
                                    world_size=self.context.world_size)
        collate = SetTripletCollate(data.image_size, data.set_size, build_augment(data.augment))
        self._make_loader(sampler, collate, data.sets_per_batch * (data.set_size + 2))

    def build_modules(self) -> dict[str, nn.Module]:
        """``model``: ``model.name`` (``faceagg_unet``) with the frozen extractor of ``model.kwargs.extractor``,
        ``num_classes`` from the data, ``embedding_size`` from the extractor, ``input_size`` = ``data.image_size``;
        ``model.weights`` (a model file of a previous run) loaded last."""
        config, size = self.config.model, self.config.data.image_size
        kwargs = dict(config.kwargs)
        if "num_classes" in kwargs:
            raise ValueError("model.kwargs.num_classes: the gan trainer sets it from the training data; remove it")
        path = kwargs.pop("extractor", None)
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise ValueError(MISSING_EXTRACTOR + ("" if path is None else f"; got {path!r}"))
        try:
            extractor, info = ckpt.load_embedder(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"model.kwargs.extractor: {path} does not exist; " + MISSING_EXTRACTOR) from None
        if info["image_size"] != size:
            raise ValueError(f"model.kwargs.extractor: {path} embeds {info['image_size']}×{info['image_size']} faces, "
                             f"but data.image_size is {size}")
        self.extractor_spec = {"name": info["name"], "kwargs": info["kwargs"]}
        with torch.no_grad():
            features = extractor(torch.zeros(1, 3, size, size)).shape[-1]
        if kwargs.setdefault("embedding_size", features) != features:
            raise ValueError(f"model.kwargs.embedding_size: {kwargs['embedding_size']}, but the extractor {path} "
                             f"gives {features}-d features (leave it out to take the extractor's)")
        if kwargs.setdefault("input_size", size) != size:
            raise ValueError(f"model.kwargs.input_size: {kwargs['input_size']} must equal data.image_size = {size} "
                             "(the discriminator's fully connected layer sees every pixel)")
        kwargs["num_classes"] = self.num_classes
        self.model_kwargs = kwargs  # as built, for export
        return {"model": ckpt.build_trained_model(config, {**kwargs, "extractor": extractor}, FaceAggregation, "gan")}

    def wrap_modules(self) -> dict[str, nn.Module]:
        """``generator``: L_G behind DDP over the aggregator; ``discriminator``: L_adv^D behind DDP over
        the discriminator (both unwrapped in a single process)."""
        model = self.modules["model"]
        return {"generator": _wrap_loss(model, "generator_loss", "aggregator", self.context),
                "discriminator": _wrap_loss(model, "discriminator_loss", "discriminator", self.context)}

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """``generator``: ``optim`` over the aggregator; ``discriminator``: Adam with ``gan.d_lr`` and
        ``gan.betas`` over the discriminator. The extractor is in neither. ``optim.lr_scales`` keys
        are the model's module paths (``aggregator.…``, ``discriminator.…``) and scale either rate."""
        gan, lr_scales = self.config.gan, self.config.optim.lr_scales
        d_config = dataclasses.replace(self.config.optim, name="adam", lr=gan.d_lr, betas=list(gan.betas))
        named = self.named_parameters(["model"])
        check_lr_scales(lr_scales, named)
        groups = {which: scaled_groups([(n, p) for n, p in named if n.startswith(f"{which}.")], lr_scales)
                  for which in ("aggregator", "discriminator")}
        return {"generator": build_optimizer(groups["aggregator"], self.config.optim),
                "discriminator": build_optimizer(groups["discriminator"], d_config)}

    # ------------------------------------------------------------------ one step

    def forward_loss(self, batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError("the gan trainer alternates two losses: see GANTrainer.train_step")

    def train_step(self, micro_batches: list) -> dict[str, float]:
        """One G step (eq. 5) then ``gan.d_steps`` D steps (eq. 12) on the G step's A, detached.

        ``micro_batches``: one collated batch (images (b·N, 3, S, S), labels (b,), offsets (b+1,),
        positives (b, 3, S, S), negatives (b, 3, S, S)). Logs: loss (L_G), dis, rec, adv, tv (eq. 6, 9,
        11, 13), and with D steps d_loss, d_fake, d_real (eq. 12 and its two terms, mean over D steps).
        """
        (batch,) = micro_batches
        images, labels, offsets = self.prepare(batch[:3])
        positives, negatives = (self.prepare((x,))[0] for x in batch[3:])
        with self.autocast():
            g = self.wrapped["generator"](images, offsets, positives, negatives, labels)
        self.backward(g.loss)
        # L_adv^G reaches the discriminator's parameters too, but its objective is eq. 12 alone: drop
        # those gradients before the generator's clipping and before any D step could use them.
        self.modules["model"].discriminator.zero_grad(set_to_none=True)
        self.optimizer_step(["generator"])
        logs = {key: float(getattr(g, key).detach()) for key in ("loss", "dis", "rec", "adv", "tv")}
        aggregated, steps = g.aggregated.detach(), self.config.gan.d_steps
        for _ in range(steps):
            with self.autocast():
                d = self.wrapped["discriminator"](aggregated, positives)
            self.backward(d.loss)
            self.optimizer_step(["discriminator"])
            for key, value in (("d_loss", d.loss), ("d_fake", d.fake), ("d_real", d.real)):
                logs[key] = logs.get(key, 0.0) + float(value.detach()) / steps
        return logs

    # ------------------------------------------------------------------ evaluation and files

    def embedder(self) -> nn.Module:
        """The frozen extractor, the image embedder of image protocols (LFW, CFP, TinyFace, ``.bin``),
        which stay constant during training; set protocols (YTF, IJB) run the aggregator itself
        (aggregate, then embed) under ``eval.set_function`` ``auto``/``model``."""
        return ckpt.embedder_for(self.modules["model"])

    def export(self) -> tuple[str, dict, nn.Module]:
        """(``model.name``, :func:`export_kwargs`, the whole FaceAggregation): the file holds the
        aggregator, discriminator, extractor and centres."""
        model = self.modules["model"]
        kwargs = export_kwargs(self.model_kwargs, self.extractor_spec)
        return self.config.model.name, kwargs, model
