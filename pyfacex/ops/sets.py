"""Set ops: element-wise max over the members of each set, and global concatenation.

Global concatenation is the Face Aggregation Network's permutation-invariant exchange between the
members of a set (Face Aggregation Network, eq. 4)::

    Y_n = X_n ⊕ max_j X_j        (⊕: concatenation along channels, max over the set's members)

Sets are ragged: a batch of b sets is packed along dim 0 as ``x`` (N, *rest) with ``offsets``
(b+1, int64; offsets[0] = 0, offsets[-1] = N, non-decreasing), set i being x[offsets[i]:offsets[i+1]].
``*_dense`` variants take the convenience form (b, T, *rest).

Gradient of the max: each max element's gradient goes to exactly one member, the one that attained
it. Ties go to the member that comes first in the set; a NaN beats every number (the max propagates
NaN, as :func:`torch.max` does) and the first NaN gets the gradient. All backends follow this rule.

The native backward recomputes the argmax from x instead of saving an index tensor in the forward:
x is kept alive by autograd anyway, and the forward then writes only its output.
"""
from __future__ import annotations

import torch

from .._ext import native
from ._backend import Kernels, declare_kernels, resolve
from ._checks import FLOAT_DTYPES, check_offsets, check_tensor, dense_offsets

__all__ = ["set_max", "global_concat", "set_max_dense", "global_concat_dense"]

_KERNELS = declare_kernels(Kernels(("native",)), "set_max", "global_concat", "set_max_dense", "global_concat_dense")


# ---------------------------------------------------------------- reference (the oracle)

def _first_argmax(members: torch.Tensor) -> torch.Tensor:
    """Index of the member attaining the max of each element, by the documented tie/NaN rule."""
    nan = members.isnan()
    first_nan = nan.to(torch.uint8).argmax(0)  # argmax returns the first of equal maxima
    first_max = (members == members.amax(0)).to(torch.uint8).argmax(0)
    return torch.where(nan.any(0), first_nan, first_max)


def set_max_reference(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Pure-PyTorch :func:`set_max`: a loop over sets, max taken by gathering the argmax member."""
    bounds = offsets.tolist()
    maxima = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        members = x[start:end]
        index = _first_argmax(members.detach()).unsqueeze(0)
        maxima.append(members.gather(0, index).squeeze(0))
    if not maxima:  # no set: a view of x, so x stays in the graph (a zero gradient) as with the kernels
        return x[:0]
    return torch.stack(maxima)


def global_concat_reference(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Pure-PyTorch :func:`global_concat`: eq. 4 as set max, repeat per member, concatenate."""
    sizes = offsets.diff()
    non_empty = sizes > 0
    maxima = set_max_reference(x, _drop_empty_sets(offsets, non_empty))
    return torch.cat([x, maxima.repeat_interleave(sizes[non_empty], dim=0)], dim=1)


def _drop_empty_sets(offsets: torch.Tensor, non_empty: torch.Tensor) -> torch.Tensor:
    return torch.cat([offsets[:1], offsets[1:][non_empty]])


# ---------------------------------------------------------------- native: autograd and fake kernels

def _register_native() -> None:
    def set_max_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def set_max_backward(ctx, grad):
        x, offsets = ctx.saved_tensors
        return torch.ops.pyfacex.set_max_backward(grad, x, offsets), None

    def global_concat_backward(ctx, grad):
        x, offsets = ctx.saved_tensors
        return torch.ops.pyfacex.global_concat_backward(grad, x, offsets), None

    torch.library.register_autograd("pyfacex::set_max", set_max_backward, setup_context=set_max_setup)
    torch.library.register_autograd("pyfacex::global_concat", global_concat_backward, setup_context=set_max_setup)

    @torch.library.register_fake("pyfacex::set_max")
    def _(x, offsets):
        return x.new_empty((offsets.shape[0] - 1, *x.shape[1:]))

    # The kernels return contiguous tensors whatever x's layout (empty_like would copy a channels_last
    # x's strides and tell the compiled graph a layout the kernel does not produce).
    @torch.library.register_fake("pyfacex::set_max_backward")
    def _(grad, x, offsets):
        return x.new_empty(x.shape)

    @torch.library.register_fake("pyfacex::global_concat")
    def _(x, offsets):
        return x.new_empty((x.shape[0], 2 * x.shape[1], *x.shape[2:]))

    @torch.library.register_fake("pyfacex::global_concat_backward")
    def _(grad, x, offsets):
        return x.new_empty(x.shape)


if native.loaded:
    _register_native()


# ---------------------------------------------------------------- public functions

def set_max(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Element-wise max over the members of each set.

    Args:
        x: (N, *rest) float32/float64/float16/bfloat16, b sets packed along dim 0.
        offsets: (b+1,) int64 set boundaries on x's device; every set must be non-empty.

    Returns:
        (b, *rest): row i is the max over x[offsets[i]:offsets[i+1]]. Gradients go to the member
        that attained each max (first member on ties, first NaN when there is one).
    """
    check_tensor(x, "x", dtypes=FLOAT_DTYPES, min_dim=1)
    check_offsets(offsets, x, allow_empty_sets=False)
    if resolve("set_max", _KERNELS, x.device) == "native":
        return torch.ops.pyfacex.set_max(x, offsets)
    return set_max_reference(x, offsets)


def global_concat(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Global concatenation Y_n = X_n ⊕ max_j X_j (Face Aggregation Network eq. 4) within each set.

    Args:
        x: (N, C, *rest) float32/float64/float16/bfloat16, b sets packed along dim 0.
        offsets: (b+1,) int64 set boundaries on x's device; empty sets are allowed.

    Returns:
        (N, 2C, *rest): each member's channels followed by its set's element-wise max.
    """
    check_tensor(x, "x", dtypes=FLOAT_DTYPES, min_dim=2)
    check_offsets(offsets, x)
    if resolve("global_concat", _KERNELS, x.device) == "native":
        return torch.ops.pyfacex.global_concat(x, offsets)
    return global_concat_reference(x, offsets)


def set_max_dense(x: torch.Tensor) -> torch.Tensor:
    """:func:`set_max` for equal-size sets: x (b, T, *rest) with T >= 1 -> (b, *rest)."""
    check_tensor(x, "x", dtypes=FLOAT_DTYPES, min_dim=2)
    if x.shape[1] == 0 and x.shape[0] > 0:
        raise ValueError(f"x must have T >= 1 members per set, got shape {tuple(x.shape)}")
    b, t = x.shape[:2]
    return set_max(x.reshape(b * t, *x.shape[2:]), dense_offsets(b, t, x.device))


def global_concat_dense(x: torch.Tensor) -> torch.Tensor:
    """:func:`global_concat` for equal-size sets: x (b, T, C, *rest) -> (b, T, 2C, *rest)."""
    check_tensor(x, "x", dtypes=FLOAT_DTYPES, min_dim=3)
    b, t = x.shape[:2]
    out = global_concat(x.reshape(b * t, *x.shape[2:]), dense_offsets(b, t, x.device))
    return out.reshape(b, t, *out.shape[1:])
