"""Functional ops of pyfacex.

Every op has a pure-PyTorch reference (the oracle of the tests). The ops that dispatch choose a
backend with :func:`use_backend` (default ``"auto"``); :func:`available_backends` says what this
installation runs one of them with on a device. What each family has besides its reference:

* sets (:func:`set_max`, :func:`global_concat` and their ``*_dense`` forms) and feature-norm quality
  (:func:`lgaf_fusion`, :func:`memory_inject`, :func:`memory_write_`, :func:`memory_step`): C++
  kernels on CPU and CUDA C++ kernels on GPUs (``native``, in ``pyfacex._C``);
* margin (:func:`cosine_logsumexp` and :func:`margin_cross_entropy`): C++ kernels on CPU only
  (``native`` is never dispatched to CUDA) and Triton kernels for GPUs;
* set attention (:func:`segment_softmax_attention`, :func:`segment_linear_attention`,
  :func:`lit_attention`): its ``native`` path is a composition of ATen ops in Python (batched
  matmuls per group of equal-length segments, so it runs wherever torch does), except for
  :func:`lit_attention` on CPU without gradients, which runs a C++ kernel (each set or segment
  whole on one thread); the softmax attention (with it, :func:`lit_attention`'s softmax relations)
  has Triton kernels (the linear one has none).

The other public functions are reference-only helpers: plain PyTorch that ignores
:func:`use_backend` and is unknown to :func:`available_backends` (which raises for them):
:func:`combined_margin`, :func:`combined_margin_slope`, :func:`adaface_margins`,
:func:`margin_logits` and :func:`margin_targets` (margin); :func:`standardized_norm`,
:func:`lgaf_quality` and :func:`qaface_weight` (quality); :func:`segment_bounds` (attention).
"""
from . import attention, margin, quality, sets
from ._backend import available_backends, current_backend, native_unavailable_reason, use_backend
from ._checks import sync_free
from .attention import (
    RELATIONS,
    lit_attention,
    segment_bounds,
    segment_linear_attention,
    segment_softmax_attention,
)
from .margin import (
    MarginCrossEntropy,
    adaface_margins,
    combined_margin,
    combined_margin_slope,
    cosine_logsumexp,
    margin_cross_entropy,
    margin_logits,
    margin_targets,
)
from .quality import (
    lgaf_fusion,
    lgaf_quality,
    memory_inject,
    memory_step,
    memory_write_,
    qaface_weight,
    standardized_norm,
)
from .sets import global_concat, global_concat_dense, set_max, set_max_dense

__all__ = [
    "available_backends",
    "current_backend",
    "native_unavailable_reason",
    "use_backend",
    "sync_free",
    *sets.__all__,
    *margin.__all__,
    *attention.__all__,
    *quality.__all__,
]
