"""Training configuration: typed dataclasses, loaded from YAML or Python recipes, overridden by ``--set``.

The dataclass defaults below are the one base; a recipe (``configs/*.yaml`` or ``*.py``) states only
what differs from them, as insightface arcface_torch's ``configs/base.py`` + small recipe files::

    # configs/lgaf_r100_ms1mv2.yaml
    model: {name: lgaf_r100}
    data: {train: /data/faces_emore, batch_size: 128}
    optim: {lr: 0.1}

A YAML recipe may name another one to start from (``base: other.yaml``, relative to the recipe); a
Python recipe defines ``config`` as a :class:`Config` or a nested dict. Every key is checked against
the dataclasses: an unknown key raises :class:`ConfigError` naming it and listing the valid keys of
its section; a value of the wrong type names the key and the expected type; a value out of its
field's range (a count, a rate, a probability, a name outside its closed set: the ``rule`` in the
field's metadata) names the full key, the range and the value, e.g.
``data.batch_size: expected an int > 0, got -4``.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib
import os
import runpy
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Config", "ConfigError", "DataConfig", "DDPConfig", "EvalConfig", "HeadConfig", "ModelConfig", "OptimConfig",
           "ScheduleConfig", "GANConfig", "QAFaceConfig", "LandmarkConfig", "load_config", "config_from_dict",
           "validate_config", "Rule",
           "apply_overrides", "config_to_dict", "config_to_yaml", "merge_recipes"]


class ConfigError(ValueError):
    """A recipe or override that does not fit the configuration's dataclasses."""


@dataclass(frozen=True)
class Rule:
    """The range of a config field's values (of each item of a list, each value of a mapping).

    ``low`` / ``high``: inclusive bounds (``low_open``: ``low`` itself excluded); ``choices``: the
    valid names, or ``"module:attribute"`` naming them (or a function returning them, e.g. a registry's
    ``list_*``) in the module that consumes them (resolved when checked, so that list has one home and
    config.py imports nothing heavy).
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] | str | None = None

    def names(self) -> tuple[str, ...]:
        if isinstance(self.choices, str):
            module, _, attribute = self.choices.partition(":")
            names = getattr(importlib.import_module(module), attribute)
            return tuple(names() if callable(names) else names)
        return tuple(self.choices)

    def check(self, value, key: str) -> None:
        """Raise :class:`ConfigError` naming ``key`` when ``value`` is out of range (None passes)."""
        if value is None:
            return
        if self.choices is not None:
            if value not in self.names():
                raise ConfigError(f"{key}: expected one of {', '.join(self.names())}, got {value!r}")
            return
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        if not (low_ok and (self.high is None or value <= self.high)):
            if self.high is None:
                bound = f"{'>' if self.low_open else '>='} {self.low:g}"
            elif self.low is None:
                bound = f"<= {self.high:g}"
            else:
                bound = f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
            raise ConfigError(f"{key}: expected {'an int' if isinstance(value, int) else 'a number'} {bound}, "
                              f"got {value!r}")


def _ruled(default=dataclasses.MISSING, *, factory=dataclasses.MISSING, **rule):
    """A dataclass field whose values :class:`Rule` ``(**rule)`` checks."""
    return field(default=default, default_factory=factory, metadata={"rule": Rule(**rule)})


POSITIVE = dict(low=0, low_open=True)
NON_NEGATIVE = dict(low=0)
UNIT = dict(low=0, high=1)  # probabilities, momenta, fractions


@dataclass
class ModelConfig:
    """What to train: a registered model (``pyfacex.models.list_models()``) or an iResNet backbone
    (``iresnet18`` ... ``iresnet200``, ``irse50``; the classification trainer adds the head).

    ``kwargs`` go to ``create_model`` / the backbone factory (e.g. ``{backbone_kwargs: {layers:
    [1, 1, 1, 1]}}``); ``weights`` is a state_dict file loaded into the model before training
    (a pyfacex model file, or an insightface ``backbone.pth`` for a backbone); ``weights_prefix`` is
    the dotted sub-module it loads into (``backbone``: an insightface ``backbone.pth`` into LFENet's or
    LGAF's backbone, the rest of the model starting fresh; empty: the whole model; the QAFace trainer
    loads into ``backbone`` unless told otherwise); ``strict`` says whether every key of that module must
    match.
    """

    name: str = "iresnet50"
    kwargs: dict[str, Any] = field(default_factory=dict)
    weights: str = ""
    weights_prefix: str = ""
    strict: bool = True


@dataclass
class HeadConfig:
    """The softmax head of the classification trainers: ``kind``, a registered head
    (:func:`pyfacex.nn.list_heads`: ``arcface``, ``cosface``, ``sphereface``, ``combined``, ``adaface``,
    ``partial_fc``, ``softmax``, ...), and that kind's own parameters beside it, e.g. ``head: {kind:
    cosface, margin: 0.35}``; :func:`pyfacex.nn.head_parameters` lists a kind's parameters and defaults
    (ArcFace ``s`` 64, ``margin`` 0.5, ``grad``, ``label_smoothing``; PartialFC ``m1``, ``m2``, ``m3``,
    ``sample_rate``; ...). A parameter the kind does not have, or a value out of its range, is an error
    naming it (``head.margin: ...``). In Python the parameters are the ``params`` dict.
    """

    kind: str = _ruled("arcface", choices="pyfacex.nn.heads:list_heads")
    params: dict[str, Any] = field(default_factory=dict, metadata={"rest": True})

    def validate(self, prefix: str) -> None:
        """Raise :class:`ConfigError` naming the parameter when the kind does not take ``params``."""
        from ..nn.heads import HeadParameterError, create_head

        try:  # the factory checks its own parameters; a 1-class, 1-d head costs nothing to build
            create_head(self.kind, 1, 1, **self.params)
        except HeadParameterError as error:
            raise ConfigError(f"{prefix}{error.parameter}: {error.message} (head kind {self.kind!r})") from None


@dataclass
class DataConfig:
    """Training data: an insightface RecordIO folder (``train.rec``/``train.idx``) or an image folder
    (one sub-folder per identity).

    ``batch_size`` is per process and per micro-batch (global batch = batch_size × processes ×
    ``Config.grad_accum``). ``augment``: any of ``flip``, ``low_quality`` (AdaFace's crop /
    photometric / low-resolution recipe), ``motion_blur``, ``down_up``, ``occlusion``, ``photometric``,
    and QAFace's Tab. 5 steps ``crop``, ``down_sample``, ``crop_down_sample`` (p = 0.2; ``@0.1`` after
    the name for p = 0.1); ``pyfacex.train.data.AUGMENTS`` lists them.
    Set trainers read ``sets_per_batch`` sets of ``set_size`` images (b × T, LFENet Sec. III-B).

    ``on_error``: ``raise`` (default) stops at the first unreadable image, naming its file and byte;
    ``skip`` replaces it by the next readable one (the batch keeps its size, every label stays with its
    own image), appends its error to ``OUTPUT/skipped_images.log`` and counts it across workers and
    ranks; the run stops once an epoch has skipped more than ``max_skipped`` of its images (a fraction:
    0.001 = 0.1 %, a broken disk rather than a few corrupt files).
    """

    train: str = ""
    batch_size: int = _ruled(128, **POSITIVE)
    num_workers: int = _ruled(2, **NON_NEGATIVE)
    image_size: int = _ruled(112, **POSITIVE)
    augment: list[str] = _ruled(factory=lambda: ["flip"], choices="pyfacex.train.data:AUGMENTS")
    sets_per_batch: int = _ruled(8, **POSITIVE)
    set_size: int = _ruled(3, **POSITIVE)
    on_error: str = _ruled("raise", choices=("raise", "skip"))
    max_skipped: float = _ruled(0.001, **UNIT)


@dataclass
class DDPConfig:
    """DistributedDataParallel settings (several processes only). ``bucket_cap_mb``: gradient bucket size
    (DDP's default 25); ``static_graph``: the same parameters take part in every step, so DDP can skip its
    per-step bookkeeping (ignored where a model needs ``find_unused_parameters``, LGAF's Method I);
    ``compression``: ``none``, ``fp16`` or ``bf16``: gradients cross the wire in that dtype (half the
    bytes), averaged there and cast back (torch's fp16/bf16 compression hooks, applied to PartialFC's
    summed gradients too)."""

    bucket_cap_mb: float = _ruled(25.0, **POSITIVE)
    static_graph: bool = False
    compression: str = _ruled("none", choices=("none", "fp16", "bf16"))


@dataclass
class OptimConfig:
    """Optimiser (``sgd``, ``adamw`` or ``adam``) and gradient clipping (``clip_grad_norm`` > 0: the
    max total L2 norm). ``lr_scales`` multiply ``lr`` per module: keys are dotted module paths among
    the trained parameters' names (the model's own, e.g. ``lit`` or ``backbone.layer4``, and ``head``
    for the classification head), the most specific key wins, e.g. ``{lit: 100, head: 100}`` (LFENet,
    Sec. IV-B); an unknown key is an error listing the valid names."""

    name: str = _ruled("sgd", choices="pyfacex.train.optim:OPTIMIZERS")
    lr: float = _ruled(0.1, **NON_NEGATIVE)
    momentum: float = _ruled(0.9, **UNIT)
    weight_decay: float = _ruled(5e-4, **NON_NEGATIVE)
    betas: list[float] = _ruled(factory=lambda: [0.9, 0.999], **UNIT)
    eps: float = _ruled(1e-8, **POSITIVE)
    clip_grad_norm: float = _ruled(0.0, **NON_NEGATIVE)
    lr_scales: dict[str, float] = _ruled(factory=dict, **NON_NEGATIVE)


@dataclass
class ScheduleConfig:
    """Learning-rate schedule per optimiser step: linear warm-up over ``warmup_epochs``, then
    ``constant``, ``step`` (× ``gamma`` at each of ``milestones``, in epochs), ``poly`` ((1 − t)^power,
    arcface_torch's) or ``cosine`` (to ``min_lr`` × the base rate)."""

    kind: str = _ruled("poly", choices="pyfacex.train.optim:SCHEDULES")
    warmup_epochs: float = _ruled(0.0, **NON_NEGATIVE)
    milestones: list[float] = _ruled(factory=list, **NON_NEGATIVE)
    gamma: float = _ruled(0.1, **NON_NEGATIVE)
    power: float = _ruled(2.0, **NON_NEGATIVE)
    min_lr: float = _ruled(0.0, **UNIT)


@dataclass
class EvalConfig:
    """Verification during training and best-checkpoint tracking.

    ``protocols``: ``"name=path"`` strings (or bare paths, named by their file/folder): insightface
    ``.bin`` files, or folders of an LFW (``pairs.txt``), CFP (``Protocol/``) or TinyFace
    (``Testing_Set/``) layout. ``every``: optimiser steps between evaluations (0: the end of every
    epoch). ``best``: the ``name/metric`` key whose maximum is kept as the best checkpoint (default:
    the first protocol's accuracy / rank-1). ``set_function``: how template and set protocols (IJB,
    YTF) pool a set: ``model`` (the model's own, e.g. LFENet's LIT across the template), ``mean``
    (per-image embeddings averaged), ``auto`` (``model`` when the model has one).
    """

    protocols: list[str] = field(default_factory=list)
    every: int = _ruled(0, **NON_NEGATIVE)
    batch_size: int = _ruled(64, **POSITIVE)
    flip: bool = True
    best: str = ""
    set_function: str = _ruled("auto", choices="pyfacex.eval.sets:SET_FUNCTIONS")


@dataclass
class GANConfig:
    """The Face Aggregation Network's adversarial training (Face Aggregation Network Sec. 4.1): the
    discriminator's Adam (``d_lr``, ``betas``) and how many D steps per G step."""

    d_lr: float = _ruled(5e-5, **NON_NEGATIVE)
    betas: list[float] = _ruled(factory=lambda: [0.9, 0.999], **UNIT)
    d_steps: int = _ruled(1, **NON_NEGATIVE)


@dataclass
class QAFaceConfig:
    """QAFace / VPL memory injection (QAFace Sec. 4.1): ``start_epoch`` (injection from this epoch;
    converted to iterations with the data's steps per epoch), Δt, τ, λ (VPL) and the momentum γ of
    the momentum backbone (null for VPL). ``normalize_weight`` (QAFace mode): inject into the
    normalised centre, W̃ = W/‖W‖ + M, instead of eq. 12's W + M. ``quality_weight`` (QAFace mode,
    default true): f(ẑ) of eq. 11 weighs the memorised samples; false: f ≡ 1 (memory without quality,
    the ablation of eq. 11)."""

    mode: str = _ruled("qaface", choices="pyfacex.models.qaface:MODES")
    start_epoch: float = _ruled(4.0, **NON_NEGATIVE)
    delta_t: int = _ruled(1000, **NON_NEGATIVE)
    tau: float = _ruled(2.0, **NON_NEGATIVE)
    lam: float = _ruled(0.15, **UNIT)
    momentum: float | None = _ruled(0.99, **UNIT)
    normalize_weight: bool = False
    quality_weight: bool = True


@dataclass
class LandmarkConfig:
    """FAN landmark training on synthetic faces: the world's ``seed``, ``difficulty`` and the number
    of ``identities`` × ``per_identity`` images rendered at ``data.image_size`` (256 for FAN's crops);
    Gaussian heatmaps of ``sigma`` pixels at a quarter of that side (64×64)."""

    seed: int = 0
    difficulty: float = _ruled(0.3, **UNIT)
    identities: int = _ruled(500, **POSITIVE)
    per_identity: int = _ruled(8, **POSITIVE)
    sigma: float = _ruled(1.0, **POSITIVE)


@dataclass
class Config:
    """One training run. ``trainer``: ``classification``, ``sets`` (LFENet), ``gan`` (Face Aggregation
    Network), ``qaface`` (QAFace and VPL), ``fanface`` or ``landmarks`` (FAN on synthetic faces).

    ``epochs`` of the data (``max_steps`` > 0 stops earlier); ``grad_accum`` micro-batches per
    optimiser step; ``amp``: ``none``, ``auto`` (fp16 + GradScaler on CUDA, bf16 on CPU), ``fp16``
    or ``bf16``; ``device``: ``auto`` (CUDA when available, the local rank's GPU under torchrun),
    ``cpu`` or ``cuda``. Logs, checkpoints and the final model go to ``output``; ``log_every`` steps
    between log lines; ``checkpoint_every`` steps between checkpoints (0: every epoch end),
    ``keep_checkpoints`` newest kept.

    Options for big runs: ``grad_checkpoint`` recomputes each backbone stage (``layer1`` ... ``layer4``)
    in the backward pass instead of keeping its activations (:func:`pyfacex.train.memory.checkpoint_stages`;
    BatchNorm statistics as without it); ``channels_last`` keeps the modules and image batches in
    channels-last memory (NHWC, what cuDNN's tensor-core convolutions and oneDNN prefer); ``compile``
    runs the model through ``torch.compile`` (in place: the state_dict keys do not change).
    """

    trainer: str = _ruled("classification", choices="pyfacex.train.registry:TRAINERS")
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    gan: GANConfig = field(default_factory=GANConfig)
    qaface: QAFaceConfig = field(default_factory=QAFaceConfig)
    landmarks: LandmarkConfig = field(default_factory=LandmarkConfig)
    ddp: DDPConfig = field(default_factory=DDPConfig)
    epochs: int = _ruled(20, **NON_NEGATIVE)
    max_steps: int = _ruled(0, **NON_NEGATIVE)
    grad_accum: int = _ruled(1, **POSITIVE)
    amp: str = _ruled("none", choices="pyfacex.train.trainer:AMP_MODES")
    seed: int = 0
    device: str = "auto"
    output: str = "runs/train"
    log_every: int = _ruled(50, **POSITIVE)
    checkpoint_every: int = _ruled(0, **NON_NEGATIVE)
    keep_checkpoints: int = _ruled(2, **POSITIVE)
    progress: bool = True
    grad_checkpoint: bool = False
    channels_last: bool = False
    compile: bool = False


# ------------------------------------------------------------------ typed construction

def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value, tp, key: str):
    """``value`` checked (and losslessly converted: int → float, tuple → list) against the annotation ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of {sorted(f.name for f in dataclasses.fields(tp))}, "
                              f"got {value!r}")
        return _build(tp, value, key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{key}: expected a mapping with string keys, got {value!r}")
        _, item = typing.get_args(tp)
        return {k: _convert(v, item, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool) or not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


def _rest_field(cls) -> str | None:
    """The field of ``cls`` that takes the keys its other fields do not name (``HeadConfig.params``)."""
    return next((f.name for f in dataclasses.fields(cls) if f.metadata.get("rest")), None)


def _build(cls, values: Mapping, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    rest = _rest_field(cls)
    if unknown and rest:  # e.g. head: {kind: cosface, margin: 0.35}: margin is a parameter of the kind
        extra = {k: values[k] for k in unknown}
        values = {k: v for k, v in values.items() if k in names}
        values[rest] = {**values.get(rest, {}), **extra}
    elif unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown config key {where}{unknown[0]}; valid keys{' of ' + prefix if prefix else ''}: "
                          f"{', '.join(names)}")
    kwargs = {k: _convert(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in values.items()}
    return cls(**kwargs)


def validate_config(section, prefix: str = "") -> None:
    """Check every field of ``section`` (a :class:`Config` or one of its sections) against its
    :class:`Rule`, and a section with a ``validate(prefix)`` method by it; raise :class:`ConfigError`
    naming the first value out of range by its full key."""
    for f in dataclasses.fields(section):
        key, value = f"{prefix}{f.name}", getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            validate_config(value, f"{key}.")
        elif "rule" in f.metadata:
            if isinstance(value, list):
                items = [(f"{key}[{i}]", v) for i, v in enumerate(value)]
            elif isinstance(value, Mapping):
                items = [(f"{key}.{k}", v) for k, v in value.items()]
            else:
                items = [(key, value)]
            for item_key, item in items:
                f.metadata["rule"].check(item, item_key)
    if hasattr(section, "validate"):  # a section whose values a registry checks (HeadConfig)
        section.validate(prefix)


def config_from_dict(values: Mapping) -> Config:
    """A :class:`Config` from a nested mapping of overrides of the defaults (checked as the module says)."""
    config = _build(Config, values)
    validate_config(config)
    return config


def config_to_dict(config) -> dict:
    """The nested dict of every value (YAML/JSON-ready), a section's ``rest`` field (the head's parameters)
    laid beside its other keys as in a recipe; ``config_from_dict`` of it gives ``config`` back."""
    values = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            values[f.name] = config_to_dict(value)
        elif f.metadata.get("rest"):
            values.update(copy.deepcopy(value))
        else:
            values[f.name] = copy.deepcopy(value)
    return values


def config_to_yaml(config: Config) -> str:
    """Every value as a YAML recipe (keys in the dataclasses' order); ``load_config`` of it gives ``config`` back."""
    import yaml

    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


# ------------------------------------------------------------------ files and overrides

def merge_recipes(base: dict, update: Mapping) -> dict:
    """``update`` laid over ``base`` as a recipe over its ``base:`` recipe: sections merge key by key,
    ``kwargs`` and every other value are replaced whole."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and key not in ("kwargs",):
            out[key] = merge_recipes(out[key], value)
        else:
            out[key] = value
    return out


def _read_recipe(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: 'base' recipes form a cycle: {' -> '.join(map(str, seen + (path,)))}")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        document = {} if document is None else document  # an empty file: the defaults
    elif path.suffix == ".py":
        namespace = runpy.run_path(str(path))
        if "config" not in namespace:
            raise ConfigError(f"{path}: a Python recipe must define `config` (a pyfacex.train.Config or a dict)")
        document = namespace["config"]
        if isinstance(document, Config):
            document = config_to_dict(document)
    else:
        raise ConfigError(f"config file {path}: expected .yaml, .yml or .py")
    if not isinstance(document, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(document).__name__}")
    document = dict(document)
    base = document.pop("base", None)
    if base is not None:
        return merge_recipes(_read_recipe((path.parent / base), seen + (path.resolve(),)), document)
    return document


def _parse_value(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"cannot parse the value {text!r}: {error}") from None


def apply_overrides(values: dict, overrides: Sequence[str]) -> dict:
    """``values`` with ``"a.b=c"`` overrides applied (``c`` parsed as YAML: ``0.05``, ``[1, 2]``, ``null``)."""
    values = dict(values)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. optim.lr=0.05")
        parts = key.strip().split(".")
        node = values
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, Mapping) else {}
            node = node[part]
        node[parts[-1]] = _parse_value(text)
    return values


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> Config:
    """The :class:`Config` of a YAML / Python recipe (None: the defaults) with ``key=value`` overrides."""
    values = {} if path is None else _read_recipe(Path(path))
    return config_from_dict(apply_overrides(values, overrides))
