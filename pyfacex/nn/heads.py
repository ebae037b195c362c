"""The head registry: every softmax head a trainer can build by name, as timm's model registry.

A head kind is one factory ``factory(dim, num_classes, *, <its parameters with defaults>) -> nn.Module``
registered with :func:`register_head`; the factory's keyword-only parameters are the kind's parameter
list (what a training config may set beside ``kind``), and the factory checks their values. The module it
returns computes ``loss = head(embeddings (B, dim), labels (B,))``.

    >>> from pyfacex.nn import create_head, head_parameters
    >>> head = create_head("cosface", dim=512, num_classes=1000, margin=0.35)
    >>> tuple(head.weight.shape)
    (1000, 512)
    >>> head_parameters("cosface")
    {'s': 64.0, 'margin': 0.4, 'grad': 'exact', 'label_smoothing': 0.0}

Adding a head is one registered factory (and its tests): docs/design.md "Adding a head".
"""
from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..ops.margin import GRAD_MODES
from .margin_heads import AdaFaceHead, ArcFace, CombinedMarginHead, CosFace, SoftmaxHead, SphereFace
from .partial_fc import PartialFC

__all__ = ["HeadParameterError", "create_head", "head_parameters", "list_heads", "register_head"]

HeadFactory = Callable[..., nn.Module]


class HeadParameterError(ValueError):
    """A head parameter that its kind does not have, or a value out of its range; ``parameter`` names it."""

    def __init__(self, kind: str, parameter: str, message: str):
        super().__init__(f"head {kind!r}: {parameter}: {message}")
        self.kind, self.parameter, self.message = kind, parameter, message


@dataclass(frozen=True)
class _Kind:
    factory: HeadFactory
    parameters: dict[str, Any]  # name -> default, in the factory's order


_KINDS: dict[str, _Kind] = {}


def register_head(kind: str, factory: HeadFactory | None = None):
    """Register ``factory`` as head ``kind``; usable as ``@register_head("name")``.

    The factory's first two parameters are positional (``dim``, ``num_classes``); the others are keyword-only,
    each with a default (the kind's default when a config does not set it). Returns the factory.
    """
    if factory is None:
        return lambda f: register_head(kind, f)
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind must be a non-empty string, got {kind!r}")
    if kind in _KINDS:
        raise ValueError(f"head kind {kind!r} is already registered (by {_KINDS[kind].factory.__qualname__})")
    params = list(inspect.signature(factory).parameters.values())
    positional = [p.name for p in params[:2] if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if positional != ["dim", "num_classes"]:
        raise TypeError(f"head factory {factory.__qualname__}: expected (dim, num_classes, *, ...) as its first "
                        f"parameters, got {[p.name for p in params[:2]]}")
    loose = [p.name for p in params[2:] if p.kind is not p.KEYWORD_ONLY or p.default is p.empty]
    if loose:
        raise TypeError(f"head factory {factory.__qualname__}: parameters after num_classes must be keyword-only "
                        f"with a default, got {loose}")
    _KINDS[kind] = _Kind(factory, {p.name: p.default for p in params[2:]})
    return factory


def list_heads() -> list[str]:
    """The registered head kinds, sorted."""
    return sorted(_KINDS)


def _kind(kind: str) -> _Kind:
    if kind not in _KINDS:
        raise ValueError(f"head.kind: expected one of {', '.join(list_heads())}, got {kind!r}")
    return _KINDS[kind]


def head_parameters(kind: str) -> dict[str, Any]:
    """The parameters of head ``kind`` with their defaults (a copy), in the factory's order."""
    return dict(_kind(kind).parameters)


def create_head(kind: str, dim: int, num_classes: int, **params) -> nn.Module:
    """Head ``kind`` for ``dim``-d embeddings and ``num_classes`` identities; ``params`` override the kind's
    defaults. An unknown kind or parameter, or a value out of range, raises a ``ValueError`` naming it
    (:class:`HeadParameterError` for parameters)."""
    entry = _kind(kind)
    for name in params:
        if name not in entry.parameters:
            raise HeadParameterError(kind, name, "not a parameter of this kind; its parameters: "
                                     f"{', '.join(entry.parameters) or 'none'}")
    for name, value in params.items():
        if isinstance(entry.parameters[name], float) and isinstance(value, int) and not isinstance(value, bool):
            params[name] = value = float(value)  # YAML's 64 for a float parameter
        problem = _RULES[name](value) if name in _RULES else None
        if problem:
            raise HeadParameterError(kind, name, f"expected {problem}, got {value!r}")
    return entry.factory(dim, num_classes, **params)


# ------------------------------------------------------------------ value rules shared by the kinds

def _number(low=None, high=None, low_open=False, high_open=False) -> Callable[[Any], str | None]:
    """A rule: None when the value is a real number in the range, else what was expected (worded as the
    training config's ranges, e.g. ``a number in (0, 1]``)."""
    if low is not None and high is not None:
        expected = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        expected = f"a number {'>' if low_open else '>='} {low:g}"
    else:
        expected = "a number"

    def check(value):
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            return expected
        if low is not None and (value <= low if low_open else value < low):
            return expected
        if high is not None and (value >= high if high_open else value > high):
            return expected
        return None
    return check


_RULES: dict[str, Callable[[Any], str | None]] = {
    "s": _number(0, low_open=True),
    "margin": _number(),
    "m1": _number(1),  # a multiplicative angular margin
    "m2": _number(),
    "m3": _number(),
    "h": _number(0),
    "t_alpha": _number(0, 1, low_open=True),
    "sample_rate": _number(0, 1, low_open=True),
    "interclass_filtering_threshold": _number(0, 1, high_open=True),
    "label_smoothing": _number(0, 1, high_open=True),
    "grad": lambda value: None if value in GRAD_MODES else f"one of {', '.join(GRAD_MODES)}",
}
"""The range of every parameter name the built-in kinds use (a name means the same in every kind)."""


# ------------------------------------------------------------------ the built-in kinds

@register_head("arcface")
def _arcface(dim, num_classes, *, s=64.0, margin=0.5, grad="exact", label_smoothing=0.0) -> ArcFace:
    """ArcFace: target logit s·cos(θ + margin)."""
    return ArcFace(dim, num_classes, s=s, m=margin, grad=grad, label_smoothing=label_smoothing)


@register_head("cosface")
def _cosface(dim, num_classes, *, s=64.0, margin=0.4, grad="exact", label_smoothing=0.0) -> CosFace:
    """CosFace: target logit s·(cos θ − margin)."""
    return CosFace(dim, num_classes, s=s, m=margin, grad=grad, label_smoothing=label_smoothing)


@register_head("sphereface")
def _sphereface(dim, num_classes, *, s=64.0, margin=1.35, grad="exact", label_smoothing=0.0) -> SphereFace:
    """SphereFace on normalised features: target logit s·cos(margin·θ)."""
    if margin < 1:  # a multiplicative angular margin: cos(m·θ)
        raise HeadParameterError("sphereface", "margin", f"expected a number >= 1, got {margin!r}")
    return SphereFace(dim, num_classes, s=s, m=margin, grad=grad, label_smoothing=label_smoothing)


@register_head("combined")
def _combined(dim, num_classes, *, s=64.0, m1=1.0, m2=0.5, m3=0.0, grad="exact",
              label_smoothing=0.0) -> CombinedMarginHead:
    """insightface's combined margin s·(cos(m1·θ + m2) − m3)."""
    return CombinedMarginHead(dim, num_classes, s=s, m1=m1, m2=m2, m3=m3, grad=grad, label_smoothing=label_smoothing)


@register_head("adaface")
def _adaface(dim, num_classes, *, s=64.0, margin=0.4, h=0.333, t_alpha=0.01, grad="exact",
             label_smoothing=0.0) -> AdaFaceHead:
    """AdaFace: a per-sample margin from the feature norm's standardised value."""
    return AdaFaceHead(dim, num_classes, s=s, m=margin, h=h, t_alpha=t_alpha, grad=grad,
                       label_smoothing=label_smoothing)


@register_head("partial_fc")
def _partial_fc(dim, num_classes, *, s=64.0, m1=1.0, m2=0.5, m3=0.0, sample_rate=1.0, grad="exact",
                label_smoothing=0.0, interclass_filtering_threshold=0.0) -> PartialFC:
    """PartialFC: the combined margin over class shards of every process, sampling ``sample_rate`` of the
    negative classes, and ignoring negatives closer than ``interclass_filtering_threshold`` (0: off)."""
    return PartialFC(dim, num_classes, s=s, m1=m1, m2=m2, m3=m3, sample_rate=sample_rate, grad=grad,
                     label_smoothing=label_smoothing, interclass_filtering_threshold=interclass_filtering_threshold)


@register_head("softmax")
def _softmax(dim, num_classes, *, label_smoothing=0.0) -> SoftmaxHead:
    """Plain softmax: a biased linear layer on the unnormalised embeddings + cross-entropy."""
    return SoftmaxHead(dim, num_classes, label_smoothing=label_smoothing)
