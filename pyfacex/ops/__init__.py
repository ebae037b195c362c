"""Functional ops of pyfacex.

Every op has a pure-PyTorch reference (the oracle of the tests). The ops that dispatch also have
native kernels (C++ on CPU; CUDA kernels, or ATen compositions, on GPUs; the margin loss has C++
kernels only) and some Triton kernels. Choose with :func:`use_backend` (default ``"auto"``) and see
what this installation runs an op with on a device with :func:`available_backends`.
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
