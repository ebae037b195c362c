"""The training loop every trainer shares: steps, accumulation, mixed precision, clipping, schedules,
logging, periodic evaluation with best-checkpoint tracking, checkpoints and exact resume.

A trainer subclass builds its modules and says how a batch becomes losses::

    class MyTrainer(Trainer):
        def build_modules(self):            # {name: module}; names in self.local_modules are per rank
            return {"model": ..., "head": ...}
        def forward_loss(self, batch):      # batch on the device, images normalised to [-1, 1]
            return {"loss": ..., "other": ...}

and may override :meth:`build_data` (sets and videos), :meth:`build_optimizers`, :meth:`train_step`
(e.g. alternating GAN updates), :meth:`after_step` (momentum updates), :meth:`embedder` and
:meth:`export` (what ``model.pt`` holds).

Resuming from a checkpoint reproduces the uninterrupted run exactly on CPU: the checkpoint holds
every module (buffers included: norm statistics, memories, centres, momentum backbones), every
optimiser, scheduler and the grad scaler, the RNG states of every rank and the data position, and
the batches and their augmentations are functions of (seed, epoch, position) (see :mod:`.data`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from . import checkpoint as ckpt
from .config import Config, config_to_dict, validate_config
from .data import (
    AugmentCollate,
    GlobalBatchSampler,
    ResumableBatches,
    SkipCounter,
    SkippedImagesError,
    build_augment,
    make_loader,
    mix_seed,
    open_dataset,
)
from .distributed import all_reduce_mean, barrier, init_distributed
from .logger import RunLogger
from .memory import checkpoint_stages
from .optim import build_optimizer, build_scheduler, check_lr_scales, scaled_groups

__all__ = ["Trainer", "AMP_MODES"]

AMP_MODES = ("none", "auto", "fp16", "bf16")


class Trainer:
    """Base of the pyfacex trainers (see the module docstring).

    Args:
        config: the run's :class:`~pyfacex.train.Config`.

    Attributes:
        context: the process's rank, world size and device (:class:`~.distributed.DistContext`).
        modules: {name: module}, unwrapped; ``wrapped`` the same behind DDP where trained across ranks.
        optimizers, schedulers: {name: ...}; ``step`` optimiser steps done, ``epoch`` and
        ``batch_in_epoch`` (micro-batches of the epoch consumed) the data position.
    """

    local_modules: frozenset[str] = frozenset()
    """Names of modules each rank holds its own part of (e.g. a PartialFC class shard)."""

    def __init__(self, config: Config):
        if not isinstance(config, Config):
            raise TypeError(f"config must be a pyfacex.train.Config, got {type(config).__name__}")
        validate_config(config)  # a Config built in Python skips config_from_dict's check
        self.config = config
        self.context = dataclasses.replace(init_distributed(config.device), ddp=config.ddp)
        self.device = self.context.device
        self.output = Path(config.output)
        if config.grad_accum < 1:
            raise ValueError(f"grad_accum must be >= 1, got {config.grad_accum}")
        self.amp_dtype, self.scaler = self._amp(config.amp)
        self.build_data()
        self.steps_per_epoch = len(self.batches.batches) // config.grad_accum
        if self.steps_per_epoch == 0:
            raise ValueError(f"an epoch has {len(self.batches.batches)} batches per process, fewer than "
                             f"grad_accum = {config.grad_accum}: nothing to train on")
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        torch.manual_seed(mix_seed(config.seed, 0))  # the same initial weights on every rank
        self.modules = {name: module.to(self.device) for name, module in self.build_modules().items()}
        self._big_run_options(config)
        torch.manual_seed(mix_seed(config.seed, self.context.rank, 2))  # dropout, class sampling: per rank
        self.wrapped = self.wrap_modules()
        self.optimizers = self.build_optimizers()
        self.schedulers = {name: build_scheduler(opt, self.total_steps, self.steps_per_epoch, config.schedule)
                           for name, opt in self.optimizers.items()}
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best: float | None = None
        self.last_evaluation: dict[str, float] = {}   # rank 0's metrics of the last evaluate(), at evaluated_step
        self.evaluated_step: int | None = None
        self.logger = RunLogger(self.output, enabled=self.context.is_main)

    # ------------------------------------------------------------------ what subclasses define

    def build_data(self) -> None:
        """Set ``self.dataset``, ``self.batches`` (:class:`~.data.ResumableBatches`), ``self.loader``
        and ``self.num_classes``. Default: shuffled image batches of ``data.batch_size``."""
        data, rank = self.config.data, self.context.rank
        self.open_training_set()
        sampler = GlobalBatchSampler(len(self.dataset), data.batch_size, self.config.seed, rank,
                                     self.context.world_size)
        self._make_loader(sampler, AugmentCollate(data.image_size, build_augment(data.augment)))

    def open_training_set(self) -> None:
        """Set ``self.dataset`` (:func:`~.data.open_dataset` of ``data.train``, with ``data.on_error``; skipped
        images' errors go to ``OUTPUT/skipped_images.log``) and ``self.num_classes``."""
        data = self.config.data
        self.dataset = open_dataset(data.train, data.on_error)
        if data.on_error == "skip":
            self.output.mkdir(parents=True, exist_ok=True)
            self.dataset.skip_log = self.output / "skipped_images.log"
        self.num_classes = int(self.dataset.labels.max()) + 1

    def _make_loader(self, sampler, collate: AugmentCollate, images_per_batch: int | None = None) -> None:
        """Set ``self.batches`` and ``self.loader`` over ``sampler``'s batches (``images_per_batch``
        images each, default ``data.batch_size``: the throughput shown)."""
        self.images_per_batch = images_per_batch or self.config.data.batch_size
        self.batches = ResumableBatches(sampler, self.config.seed, self.context.rank)
        data = self.config.data
        self.skips = SkipCounter(data.num_workers) if data.on_error == "skip" else None
        self._skips_before_epoch = 0  # this process's count when the epoch began
        self.loader = make_loader(self.dataset, self.batches, collate, data.num_workers,
                                  pin_memory=self.device.type == "cuda", skips=self.skips)

    def build_modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def _big_run_options(self, config: Config) -> None:
        """``grad_checkpoint``, ``channels_last`` and ``compile`` (the Config docstring) on the modules."""
        if config.grad_checkpoint:
            checkpoint_stages(self.modules["model"])
        if config.channels_last:
            for module in self.modules.values():
                module.to(memory_format=torch.channels_last)
        if config.compile:
            self.modules["model"].compile()  # in place: the wrapper would prefix every state_dict key

    def wrap_modules(self) -> dict[str, nn.Module]:
        """The modules as the forward uses them (DDP where needed). Default: unwrapped."""
        return dict(self.modules)

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Default: one optimiser (``optim``) over the shared modules, one over the per-rank ones, each
        with the groups of ``optim.lr_scales`` (:func:`~.optim.scaled_groups`)."""
        parts = {"shared": self.named_parameters([n for n in self.modules if n not in self.local_modules]),
                 "local": self.named_parameters([n for n in self.modules if n in self.local_modules])}
        lr_scales = self.config.optim.lr_scales
        check_lr_scales(lr_scales, parts["shared"] + parts["local"])
        return {name: build_optimizer(scaled_groups(named, lr_scales), self.config.optim)
                for name, named in parts.items() if any(p.requires_grad for _, p in named)}

    def named_parameters(self, names) -> list[tuple[str, nn.Parameter]]:
        """(name, parameter) of the modules ``names`` as ``optim.lr_scales`` names them: the ``model``'s
        own names (``lit.value.weight``), another module's under its name (``head.weight``)."""
        return [(key if name == "model" else f"{name}.{key}", p)
                for name in names for key, p in self.modules[name].named_parameters()]

    def forward_loss(self, batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after every optimiser step (e.g. a momentum update)."""

    def embedder(self) -> nn.Module:
        """The module mapping faces in [-1, 1] to embeddings, for evaluation."""
        return ckpt.embedder_for(self.modules["model"])

    def export(self) -> tuple[str, dict, nn.Module]:
        """(name, kwargs, module) of the model file: ``build_model(name, kwargs)`` rebuilds ``module``."""
        return self.config.model.name, self.config.model.kwargs, self.modules["model"]

    def state_extra(self) -> dict:
        """Trainer state beyond modules and optimisers to checkpoint (plain data and tensors)."""
        return {}

    def load_state_extra(self, state: dict) -> None:
        """Restore :meth:`state_extra`."""

    # ------------------------------------------------------------------ one step

    def _amp(self, mode: str):
        if mode not in AMP_MODES:
            raise ValueError(f"amp: expected one of {AMP_MODES}, got {mode!r}")
        cuda = self.device.type == "cuda"
        if mode == "none":
            return None, None
        if mode == "fp16" and not cuda:
            raise ValueError("amp: fp16 needs a CUDA device (use bf16 or auto on CPU)")
        if mode == "fp16" or (mode == "auto" and cuda):
            return torch.float16, torch.amp.GradScaler("cuda")
        return torch.bfloat16, None

    def autocast(self):
        """The mixed-precision context of the forward passes (a no-op with ``amp: none``)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def prepare(self, batch):
        """The batch on the device: uint8 images → float (x/255 − 0.5)/0.5, other tensors moved."""
        images, *rest = batch
        images = images.to(self.device, non_blocking=True).float().div_(127.5).sub_(1.0)
        if self.config.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return (images, *(t.to(self.device, non_blocking=True) for t in rest))

    def no_sync(self, skip: bool):
        """DDP's ``no_sync`` on every wrapped module while accumulating (``skip``)."""
        stack = contextlib.ExitStack()
        if skip:
            for module in self.wrapped.values():
                if isinstance(module, nn.parallel.DistributedDataParallel):
                    stack.enter_context(module.no_sync())
        return stack

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def optimizer_step(self, names=None, clip_modules=None) -> None:
        """Unscale, clip (``optim.clip_grad_norm`` over ``clip_modules``, default the shared ones; the
        per-rank class shards are not clipped, as insightface), step, zero the gradients and advance
        the schedulers of the optimisers ``names`` (default all)."""
        names = list(self.optimizers) if names is None else names
        if self.scaler is not None:
            for name in names:
                self.scaler.unscale_(self.optimizers[name])
        limit = self.config.optim.clip_grad_norm
        if limit > 0:
            clip = [n for n in self.modules if n not in self.local_modules] if clip_modules is None else clip_modules
            params = [p for n in clip for p in self.modules[n].parameters() if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, limit)
        for name in names:
            if self.scaler is not None:
                self.scaler.step(self.optimizers[name])
            else:
                self.optimizers[name].step()
            self.optimizers[name].zero_grad(set_to_none=True)
            self.schedulers[name].step()
        if self.scaler is not None:
            self.scaler.update()

    def train_step(self, micro_batches: list) -> dict[str, float]:
        """One optimiser step over ``grad_accum`` micro-batches: the losses' means for the log."""
        totals: dict[str, float] = defaultdict(float)
        for i, batch in enumerate(micro_batches):
            with self.no_sync(i < len(micro_batches) - 1), self.autocast():
                losses = self.forward_loss(self.prepare(batch))
            self.backward(losses["loss"] / len(micro_batches))
            for key, value in losses.items():
                totals[key] += float(value.detach()) / len(micro_batches)
        self.optimizer_step()
        return dict(totals)

    # ------------------------------------------------------------------ the loop

    @property
    def lr(self) -> float:
        """The current rate of the first optimiser's first group (its unscaled one, if any)."""
        return next(iter(self.optimizers.values())).param_groups[0]["lr"]

    def fit(self, resume: str | Path | None = None) -> dict:
        """Train to ``total_steps``; ``resume``: a checkpoint folder, or ``"auto"`` for the latest in
        ``output/checkpoints`` (a fresh start when there is none). Writes ``output/model.pt`` at the
        end and returns the last logged values, the evaluation of that final model as ``eval/<metric>``
        (for a trainer that evaluates; e.g. ``eval/nme`` of a landmark run) and the best evaluation
        (``best``) when there was one."""
        if resume is not None:
            self.restore(resume)
        config, main = self.config, self.context.is_main
        if main:
            self.output.mkdir(parents=True, exist_ok=True)
            self.logger.log("start", self.step, config=config_to_dict(config), world_size=self.context.world_size,
                            steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps)
        for module in self.modules.values():
            module.train()
        images_per_step = self.images_per_batch * config.grad_accum * self.context.world_size
        last: dict = {}
        window: dict[str, float] = defaultdict(float)
        window_steps, window_start = 0, time.perf_counter()
        while self.step < self.total_steps:
            self.batches.set_position(self.epoch, self.batch_in_epoch)
            remaining = min(self.steps_per_epoch - self.batch_in_epoch // config.grad_accum,
                            self.total_steps - self.step)
            batches = iter(self.loader)
            with tqdm(total=remaining, desc=f"epoch {self.epoch + 1}", unit="step", dynamic_ncols=True,
                      disable=not (main and config.progress)) as bar:
                for _ in range(remaining):
                    lr = self.lr  # the rate of this step (the schedulers advance inside it)
                    logs = self.train_step([next(batches) for _ in range(config.grad_accum)])
                    self.batch_in_epoch += config.grad_accum
                    self.step += 1
                    self.after_step()
                    for key, value in logs.items():
                        window[key] += value
                    window_steps += 1
                    elapsed = time.perf_counter() - window_start
                    speed = window_steps * images_per_step / max(elapsed, 1e-9)
                    bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{lr:.3g}", img_s=f"{speed:.0f}")
                    bar.update()
                    epoch_end = self.batch_in_epoch >= self.steps_per_epoch * config.grad_accum
                    if epoch_end or self.step % config.log_every == 0:
                        self._check_skipped(epoch_end)
                    if epoch_end:
                        self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                    if self.step % config.log_every == 0 or self.step == self.total_steps:
                        last = all_reduce_mean({k: v / window_steps for k, v in window.items()}, self.context)
                        self.logger.log("train", self.step, epoch=self.epoch, lr=lr, images_per_s=speed, **last)
                        window, window_steps, window_start = defaultdict(float), 0, time.perf_counter()
                    self._periodic(epoch_end=self.batch_in_epoch == 0)
            del batches
        if self.evaluates and self.evaluated_step != self.step:   # resumed after the last step: evaluate it here
            self.evaluate()
        self.save_model(self.output / "model.pt")
        if main:
            self.logger.log("end", self.step, best=self.best)
        self.logger.close()
        final = {f"eval/{key}": value for key, value in self.last_evaluation.items()}
        return {**last, **final, **({"best": self.best} if self.best is not None else {})}

    def _newest_intact(self, root: Path) -> tuple[Path, tuple[dict, dict]] | None:
        """(folder, its (shared, local)) of the newest checkpoint every rank reads, or None without any."""
        candidates, failures = ckpt.resume_candidates(root), []
        for folder in candidates:
            try:
                parts, failure = ckpt.load_checkpoint(folder, self.context.rank, self.context.world_size), None
            except ckpt.CheckpointError as error:
                parts, failure = None, str(error)
                if not self.context.is_main:  # rank 0's warning can only say "another rank"
                    warnings.warn(f"rank {self.context.rank}: {failure}", RuntimeWarning, stacklevel=3)
            # every rank must take the same checkpoint: one rank's unreadable file rules it out for all
            if all_reduce_mean({"intact": float(failure is None)}, self.context)["intact"] == 1.0:
                if failures and self.context.is_main:
                    warnings.warn(f"resuming from {folder}, the newest intact checkpoint; skipped: "
                                  + "; ".join(failures), RuntimeWarning, stacklevel=3)
                return folder, parts
            failures.append(failure or f"{folder}: unreadable on another rank (its log names the file)")
        if candidates:
            raise ckpt.CheckpointError(f"no intact checkpoint under {root} to resume from: " + "; ".join(failures))
        return None

    def _check_skipped(self, epoch_end: bool) -> None:
        """With ``data.on_error: skip``: the images skipped this epoch, summed over workers and ranks (every
        rank calls this at the same steps); stop the run once they pass ``data.max_skipped`` of the
        training set, and log the epoch's count at its end. Images are counted when read (a DataLoader
        reads a few batches ahead), and a resumed epoch counts from the resume."""
        if self.skips is None:
            return
        mine = self.skips.total() - self._skips_before_epoch
        skipped = round(all_reduce_mean({"skipped": mine}, self.context)["skipped"] * self.context.world_size)
        data = self.config.data
        if skipped > data.max_skipped * len(self.dataset):
            raise SkippedImagesError(f"data.on_error: {skipped} unreadable images skipped in epoch {self.epoch + 1}, "
                                     f"more than data.max_skipped = {data.max_skipped:g} of the {len(self.dataset)} "
                                     f"training images; their errors (file and byte) are in {self.dataset.skip_log}")
        if epoch_end:
            self.logger.log("data", self.step, epoch=self.epoch + 1, skipped=skipped)
            self._skips_before_epoch += mine

    def _periodic(self, epoch_end: bool) -> None:
        config = self.config
        done = self.step == self.total_steps
        every = config.eval.every
        if self.evaluates and ((every and self.step % every == 0) or (not every and epoch_end) or done):
            self.evaluate()
        every = config.checkpoint_every
        if (every and self.step % every == 0) or (not every and epoch_end) or done:
            self.save_checkpoint()

    # ------------------------------------------------------------------ evaluation

    best_mode = "max"
    """Whether the best checkpoint has the highest (``max``: accuracies) or lowest (``min``: errors) metric."""

    @property
    def evaluates(self) -> bool:
        """Whether :meth:`evaluate` runs on the ``eval.every`` schedule (default: with ``eval.protocols``)."""
        return bool(self.config.eval.protocols)

    def metrics(self) -> tuple[dict[str, float], str]:
        """Rank 0's evaluation: ({name/metric: value}, the default key of the best checkpoint).
        Default: every protocol of ``eval.protocols`` on :meth:`embedder`, the first one's headline metric;
        template and set protocols pool with ``eval.set_function`` (the model's own set function, e.g.
        LFENet's LIT across each IJB template, when it has one and the setting is ``auto`` or ``model``)."""
        from ..eval.protocols import evaluate_protocol

        embedder, metrics, primary = self.embedder(), {}, None
        for spec in self.config.eval.protocols:
            result = evaluate_protocol(spec, embedder, batch_size=self.config.eval.batch_size,
                                       flip=self.config.eval.flip, device=self.device,
                                       image_size=self.config.data.image_size, set_model=self.modules.get("model"),
                                       set_function=self.config.eval.set_function)
            metrics.update({f"{result.name}/{k}": v for k, v in result.metrics.items()})
            primary = primary or f"{result.name}/{result.primary}"
        return metrics, primary

    def evaluate(self) -> dict[str, float]:
        """:meth:`metrics` on rank 0, logged; ``best_model.pt`` kept when the ``eval.best`` metric improves."""
        metrics: dict[str, float] = {}
        if self.context.is_main:
            metrics, primary = self.metrics()
            for module in self.modules.values():
                module.train()
            key = self.config.eval.best or primary
            if key not in metrics:
                raise ValueError(f"eval.best: {key!r} is not a metric of the evaluation; it gives {sorted(metrics)}")
            value = metrics[key]
            if self.best is None or (value > self.best if self.best_mode == "max" else value < self.best):
                self.best = value
                self.save_model(self.output / "best_model.pt")
            self.logger.log("eval", self.step, epoch=self.epoch, best_key=key, best=self.best, **metrics)
        self.last_evaluation, self.evaluated_step = dict(metrics), self.step
        barrier(self.context)
        return metrics

    # ------------------------------------------------------------------ files

    def save_model(self, path: Path) -> None:
        """Write the model file (rank 0)."""
        if self.context.is_main:
            name, kwargs, module = self.export()
            ckpt.save_model(path, module, name=name, kwargs=kwargs, image_size=self.config.data.image_size)

    def save_checkpoint(self) -> Path:
        """Write ``output/checkpoints/step_<n>/`` (every rank its part) and mark it the latest."""
        root = self.output / "checkpoints"
        shared_names = [n for n in self.modules if n not in self.local_modules]
        shared = None
        if self.context.is_main:
            shared = {
                "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "best": self.best,
                "world_size": self.context.world_size, "config": config_to_dict(self.config),
                "modules": {n: self.modules[n].state_dict() for n in shared_names},
                "optimizers": {n: o.state_dict() for n, o in self.optimizers.items() if n != "local"},
                "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "extra": self.state_extra(),
            }
        local = {"modules": {n: self.modules[n].state_dict() for n in self.local_modules},
                 "optimizers": {"local": self.optimizers["local"].state_dict()} if "local" in self.optimizers else {},
                 "rng": ckpt.rng_state()}
        folder = ckpt.save_checkpoint(root, self.step, rank=self.context.rank, shared=shared, local=local)
        barrier(self.context)
        if self.context.is_main:
            ckpt.mark_latest(root, folder, self.config.keep_checkpoints)
        return folder

    def restore(self, source: str | Path) -> None:
        """Load a checkpoint folder; ``"auto"``: the latest under ``output/checkpoints`` (a fresh start when
        there is none), or when it is unreadable on any rank the newest intact older one, with a warning
        naming the file and why. A folder given by name must be intact.

        Raises:
            CheckpointError: the named folder is unreadable, or (``auto``) no checkpoint is intact; names
                every file that failed and why.
        """
        if str(source) == "auto":
            found = self._newest_intact(self.output / "checkpoints")
            if found is None:
                return
            source, (shared, local) = found
        else:
            shared, local = ckpt.load_checkpoint(source, self.context.rank, self.context.world_size)
        for part in (shared, local):
            for name, state in part["modules"].items():
                if name not in self.modules:
                    raise ValueError(f"{source}: the checkpoint holds a module {name!r} this trainer does not "
                                     f"have ({', '.join(self.modules)})")
                ckpt.load_state_dict_checked(self.modules[name], state, f"module {name!r} of {source}")
            for name, state in part["optimizers"].items():
                self.optimizers[name].load_state_dict(state)
        for name, state in shared["schedulers"].items():
            self.schedulers[name].load_state_dict(state)
        if self.scaler is not None and shared["scaler"] is not None:
            self.scaler.load_state_dict(shared["scaler"])
        self.step, self.epoch, self.batch_in_epoch = shared["step"], shared["epoch"], shared["batch_in_epoch"]
        self.best = shared["best"]
        self.load_state_extra(shared["extra"])
        ckpt.set_rng_state(local["rng"])
