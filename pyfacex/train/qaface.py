"""The QAFace / VPL trainer: a backbone whose softmax centres are injected with a memory of features
(QAFace Sec. 3.4, Fig. 3; VPL, its baseline).

The model (:mod:`pyfacex.models.qaface`: ``qaface_r50``, ``qaface_r100``, ``vpl_r100``) holds the
online backbone, the momentum backbone (QAFace) and its own margin head (class weights, memory,
write stamps, norm statistics): there is no separate ``head`` module. One step::

    loss = model(images, labels, iteration=step)     # injection (eq. 12 / VPL), then the write (eq. 7)
    loss.backward(); optimiser.step()
    model.momentum_update()                          # θ_m ← γ·θ_m + (1 − γ)·θ (a no-op for VPL)

Where each setting comes from (one source per setting; a key given twice is an error):

* ``qaface.*``: ``mode``, ``delta_t`` (Δt), ``tau`` (τ, eq. 11), ``lam`` (VPL's λ), ``momentum``
  (γ; null for VPL), ``normalize_weight`` (QAFace: W̃ = W/‖W‖ + M), ``quality_weight`` (QAFace; false:
  f ≡ 1, every sample memorised unweighted) and ``start_epoch``, converted
  to the model's ``start_iteration`` = round(start_epoch × steps per epoch): "we start the injection
  after the fourth epoch" (Sec. 4.3) is ``start_epoch: 4`` whatever the data and batch size. The
  entry point's own defaults for these (tuned to WebFace4M at batch 1024) are therefore always
  replaced.
* ``head.*``: the margin of the loss (eq. 3): ``kind`` ``arcface`` (m2 = ``margin`` or 0.5, QAFace's
  loss), ``cosface`` (m3 = ``margin`` or 0.4) or ``combined`` (m1, m2, m3); ``s``, ``grad`` and
  ``label_smoothing`` as the other trainers.
* ``model.kwargs``: the backbone only: ``embedding_size`` and the iResNet's ``layers``, ``widths``,
  ``input_size``, ``dropout``, ``fp16``, plus ``stats_momentum`` (eq. 8-9). Keys of the two sections
  above in ``model.kwargs`` raise an error naming the section to use instead.

``vpl_r100`` names the VPL preset and needs ``qaface.mode: vpl``; VPL memorises the online backbone's
features (no momentum copy), so ``mode: vpl`` needs ``qaface.momentum: null`` — an explicit error
rather than a silent QAFace/VPL hybrid from the default γ = 0.99.

The class weights start as the classification trainer's (:func:`~.classification.init_class_weights`),
so a QAFace run and its ArcFace baseline with one seed start from the same centres.

Distributed: the model is wrapped in DDP as a whole (the online backbone and the class weights are
trained replicas; the momentum backbone has no gradient). The memory, stamps and norm statistics are
kept equal across ranks by the model itself (it all-gathers the memorised rows of the global batch;
:class:`~pyfacex.nn.NormStats` all-reduces), so DDP is told to leave them out of its per-forward
buffer broadcast: at WebFace4M size the memory alone is C×d = 200k×512 floats (400 MB a step).

Gradient accumulation: the micro-batches of one step share its iteration, so a later micro-batch
reads what an earlier one of the same step wrote (other samples' features, never its own).

``model.pt`` holds the online backbone alone, as the iResNet factory of the entry point
(``qaface_r50`` → ``iresnet50``; ``qaface_r100``, ``vpl_r100`` → ``iresnet100``) with
``num_features`` = ``embedding_size`` and the iResNet keywords of ``model.kwargs``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..models import create_model
from ..models.qaface import IRESNET_KEYS, QAFace
from ..nn import head_parameters
from . import checkpoint as ckpt
from .classification import init_class_weights
from .distributed import wrap_ddp
from .trainer import Trainer

__all__ = ["QAFaceTrainer", "ENTRY_POINTS", "margin_kwargs"]

ENTRY_POINTS = {"qaface_r50": "iresnet50", "qaface_r100": "iresnet100", "vpl_r100": "iresnet100"}
"""Models this trainer trains -> the iResNet factory of their backbone (the name ``model.pt`` carries)."""

_FROM_QAFACE = ("mode", "start_iteration", "delta_t", "tau", "lam", "momentum", "normalize_weight", "quality_weight")
_FROM_HEAD = ("s", "m1", "m2", "m3", "grad", "label_smoothing")
_MARGIN_KINDS = ("arcface", "cosface", "combined")


def margin_kwargs(head) -> dict:
    """The margin keywords (s, m1, m2, m3, grad, label_smoothing) of :class:`~pyfacex.models.qaface.MemoryInjectionHead`
    for a :class:`~pyfacex.train.config.HeadConfig` of kind ``arcface``, ``cosface`` or ``combined`` (its
    parameters over the kind's defaults)."""
    if head.kind not in _MARGIN_KINDS:
        raise ValueError(f"head.kind: the qaface trainer injects memory into a combined-margin softmax; expected one "
                         f"of {_MARGIN_KINDS}, got {head.kind!r}")
    p = {**head_parameters(head.kind), **head.params}
    margins = {"arcface": (1.0, p.get("margin"), 0.0), "cosface": (1.0, 0.0, p.get("margin")),
               "combined": (p.get("m1"), p.get("m2"), p.get("m3"))}[head.kind]
    return dict(zip(("m1", "m2", "m3"), margins), s=p["s"], grad=p["grad"], label_smoothing=p["label_smoothing"])


class QAFaceTrainer(Trainer):
    """QAFace / VPL training on shuffled image batches (see the module docstring for the config).

    Modules: ``model`` (:class:`~pyfacex.models.qaface.QAFace`, head and memory included). Logs per
    step: ``loss``; ``injected``, the fraction of classes whose centre carried memory this step (0
    before the start); in QAFace mode with ``qaface.quality_weight``, from the first write (start − Δt)
    on, ``quality`` the mean f(ẑ) (eq. 11) of the memorised samples and ``ignored`` the fraction with
    f = 0 (ẑ < −τ).
    """

    def _check_config(self) -> None:
        config, q = self.config, self.config.qaface
        if config.model.name not in ENTRY_POINTS:
            raise ValueError(f"model.name: the qaface trainer trains {', '.join(ENTRY_POINTS)}, "
                             f"got {config.model.name!r}")
        if q.mode not in ("qaface", "vpl"):
            raise ValueError(f"qaface.mode: expected 'qaface' or 'vpl', got {q.mode!r}")
        if config.model.name.startswith("vpl") and q.mode != "vpl":
            raise ValueError(f"model.name {config.model.name} is the VPL preset: set qaface.mode=vpl "
                             f"(got {q.mode!r}), or train qaface_r100")
        if q.mode == "vpl" and q.momentum is not None:
            raise ValueError(f"qaface.momentum: VPL memorises the online backbone's features; set qaface.momentum=null "
                             f"with qaface.mode=vpl (got {q.momentum})")
        if q.mode == "vpl" and q.normalize_weight:
            raise ValueError("qaface.normalize_weight: VPL always mixes the normalised centre; it applies to "
                             "qaface.mode=qaface only (got qaface.mode=vpl)")
        if q.mode == "vpl" and not q.quality_weight:
            raise ValueError("qaface.quality_weight: VPL has no quality weight (every sample writes with f = 1); "
                             "false applies to qaface.mode=qaface only (got qaface.mode=vpl)")
        if not q.start_epoch >= 0:
            raise ValueError(f"qaface.start_epoch: expected a number of epochs >= 0, got {q.start_epoch}")
        kwargs = config.model.kwargs
        for keys, section in ((("num_classes",), "the data"), (_FROM_QAFACE, "qaface.*"), (_FROM_HEAD, "head.*")):
            given = sorted(k for k in keys if k in kwargs)
            if given:
                raise ValueError(f"model.kwargs: {given} are set by the qaface trainer from {section}; remove them "
                                 "from model.kwargs")
        if "backbone" in kwargs:
            raise ValueError("model.kwargs: backbone cannot be given; the backbone is the entry point's iResNet "
                             f"(configure it with {', '.join(IRESNET_KEYS)})")

    @property
    def start_iteration(self) -> int:
        """The first injected iteration: round(qaface.start_epoch × steps per epoch)."""
        return round(self.config.qaface.start_epoch * self.steps_per_epoch)

    def build_modules(self) -> dict[str, nn.Module]:
        """{"model": QAFace}, built after the data (``steps_per_epoch`` converts ``start_epoch``)."""
        self._check_config()
        q = self.config.qaface
        kwargs = dict(self.config.model.kwargs, mode=q.mode, start_iteration=self.start_iteration,
                      delta_t=q.delta_t, tau=q.tau, lam=q.lam, momentum=q.momentum,
                      normalize_weight=q.normalize_weight, quality_weight=q.quality_weight,
                      **margin_kwargs(self.config.head))
        model = create_model(self.config.model.name, num_classes=self.num_classes, **kwargs)
        init_class_weights(model.head.weight, 0, self.config.seed)
        # a pretrained backbone (a model.pt this trainer wrote, or insightface's)
        ckpt.load_model_weights(model, self.config.model, default_prefix="backbone")
        if self.config.model.weights and model.momentum_backbone is not None:  # θ_m starts at θ (MoCo)
            model.momentum_backbone.load_state_dict(model.backbone.state_dict())
        return {"model": model}

    def wrap_modules(self) -> dict[str, nn.Module]:
        """The model in DDP, its memory buffers left to the model's own synchronisation (module docstring)."""
        model = self.modules["model"]
        own_sync = [f"head.{name}" for name, _ in model.head.named_buffers()
                    if name in ("memory", "stamps") or name.startswith("norm_stats.")]
        return {"model": wrap_ddp(model, self.context, ignore=own_sync)}

    def forward_loss(self, batch) -> dict[str, torch.Tensor]:
        """The loss of step ``self.step`` (0-based: the step being taken) and the injection figures."""
        images, labels = batch
        out = self.wrapped["model"](images, labels, iteration=self.step, return_details=True)
        logs = {"loss": out.loss,
                "injected": out.active.float().mean() if out.active is not None else out.loss.new_zeros(())}
        if out.quality is not None:
            logs["quality"] = out.quality.float().mean()
            logs["ignored"] = (out.quality == 0).float().mean()
        return logs

    def after_step(self) -> None:
        """θ_m ← γ·θ_m + (1 − γ)·θ after the optimiser step (Fig. 3 right; a no-op for VPL)."""
        self.modules["model"].momentum_update()

    def export(self) -> tuple[str, dict, nn.Module]:
        """(iResNet factory, its kwargs, the online backbone): ``build_model`` rebuilds the backbone alone."""
        model: QAFace = self.modules["model"]
        kwargs = {k: v for k, v in self.config.model.kwargs.items() if k in IRESNET_KEYS}
        kwargs["num_features"] = model.head.weight.shape[1]
        return ENTRY_POINTS[self.config.model.name], kwargs, model.backbone
