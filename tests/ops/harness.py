"""The test harness every op plugs into.

An op family describes its ops with :class:`OpSpec` (in ``tests/ops/specs_<family>.py``) and
``test_op_contract.py`` runs the same contract on all of them: parity of each backend with the
reference (float32, float16/bfloat16 with dtype-aware tolerances, odd and empty shapes,
non-contiguous inputs, forward and gradients), float64 gradcheck, ``torch.library.opcheck`` of
every native op, and the bad-input errors.

An op without kernels of its own (``backends=()``: a reference-only helper that does not dispatch) runs
the same contract on its reference alone: the reference in each dtype and layout against the
reference in float32 on the same rounded, contiguous values (output dtype, half-precision
behaviour, layout independence), float64 gradcheck, and the bad-input errors.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

# (rtol, atol) of a backend's output against the reference run in float32 on the same values.
TOLERANCES = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-6),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}


@dataclass
class Sample:
    """Inputs of one call: ``public(*args, **kwargs)``.

    ``gradcheck=False`` marks inputs at a point where the op is not differentiable (ties of a max):
    parity still checks the gradient there, finite differences cannot.
    """

    label: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    gradcheck: bool = True


@dataclass
class BadInput:
    """A call that must raise ``error`` with a message matching ``match`` before any kernel runs."""

    label: str
    args: tuple
    error: type[Exception]
    match: str
    kwargs: dict = field(default_factory=dict)


@dataclass
class OpSpec:
    """How the harness exercises one public op.

    Attributes:
        name: the op's name in test ids (a variant's name may add a suffix: ``"set_max-gpu"``).
        public: the dispatching function in ``pyfacex.ops``.
        samples: ``(dtype, device) -> [Sample]``; include odd sizes and empty batches. The harness
            adds a non-contiguous copy of every sample itself.
        grad_args: positions of the differentiable tensor arguments (empty: not differentiable).
        native_calls: ``(dtype, device) -> [(op overload, args)]`` for opcheck, backward ops included;
            None for ops whose native path is a composition of ATen ops (nothing registered to check).
        bad_inputs: ``device -> [BadInput]``.
        backends: backends the op implements besides the reference; ``()`` for a reference-only op
            (one that does not dispatch): the contract then runs on the reference alone
            (:func:`checked_backends`).
        dtypes: floating dtypes the op accepts.
        call: runs ``public`` on a sample and returns every tensor to compare (outputs, and buffers
            an in-place op mutates). Defaults to the function's outputs.
        tolerances: per-dtype (rtol, atol) replacing :data:`TOLERANCES`, for ops whose outputs are
            reductions long enough that summation order shows (say why where you set it).
        output_dtype: maps the dtype of the first argument to the dtype of the floating outputs, for
            ops whose outputs do not follow it (statistics in float32); None: they follow it.
        op (property): the name ``pyfacex.ops.available_backends`` knows the op by: ``name`` up to
            its first ``-``.
    """

    name: str
    public: Callable
    samples: Callable[[torch.dtype, torch.device], list[Sample]]
    native_calls: Callable[[torch.dtype, torch.device], list[tuple]] | None
    bad_inputs: Callable[[torch.device], list[BadInput]]
    grad_args: Sequence[int] = ()
    backends: Sequence[str] = ("native",)
    dtypes: Sequence[torch.dtype] = (torch.float32, torch.float16, torch.bfloat16)
    call: Callable[[Callable, Sample], tuple] | None = None
    tolerances: dict = field(default_factory=dict)
    output_dtype: Callable[[torch.dtype], torch.dtype] | None = None

    @property
    def op(self) -> str:
        return self.name.split("-")[0]

    def run(self, sample: Sample) -> tuple:
        if self.call is not None:
            return self.call(self.public, sample)
        out = self.public(*sample.args, **sample.kwargs)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def __str__(self) -> str:
        return self.name


def checked_backends(spec: OpSpec) -> tuple[str, ...]:
    """The backends the contract checks ``spec`` on: its own, or its reference for a reference-only op."""
    return tuple(spec.backends) or ("reference",)


def clone_sample(sample: Sample, *, dtype: torch.dtype | None = None, requires_grad: Sequence[int] = (),
                 contiguous: bool = False) -> Sample:
    """A deep copy whose floating tensors are cast to ``dtype`` (and made contiguous with
    ``contiguous``) and leaves requiring grad at ``requires_grad``."""
    args = []
    for i, a in enumerate(sample.args):
        if isinstance(a, torch.Tensor):
            a = a.detach().clone(memory_format=torch.contiguous_format if contiguous else torch.preserve_format)
            if dtype is not None and a.is_floating_point():
                a = a.to(dtype)
            if i in requires_grad:
                a.requires_grad_(True)
        args.append(a)
    return Sample(sample.label, tuple(args), dict(sample.kwargs), sample.gradcheck)


def non_contiguous(sample: Sample) -> Sample | None:
    """The same values with every floating tensor of 2+ dims stored column-major (None if no tensor changes)."""
    changed = False
    args = []
    for a in sample.args:
        if (isinstance(a, torch.Tensor) and a.is_floating_point() and a.dim() >= 2
                and a.shape[-1] > 1 and a.shape[-2] > 1):
            a = a.transpose(-1, -2).contiguous().transpose(-1, -2)
            changed = True
        args.append(a)
    return Sample(sample.label + "-noncontig", tuple(args), dict(sample.kwargs), sample.gradcheck) if changed else None


def _channels_last(a):
    """A 4-D floating tensor with channels and pixels stored channels_last (else None)."""
    if (isinstance(a, torch.Tensor) and a.is_floating_point() and a.dim() == 4
            and a.shape[1] > 1 and a.shape[2] * a.shape[3] > 1):
        return a.contiguous(memory_format=torch.channels_last)
    return None


def channels_last_args(args: Sequence) -> tuple | None:
    """``args`` with every 4-D floating tensor channels_last (None if no tensor changes)."""
    moved = [_channels_last(a) for a in args]
    if all(m is None for m in moved):
        return None
    return tuple(a if m is None else m for a, m in zip(args, moved))


def with_variants(samples: list[Sample]) -> list[Sample]:
    """Every sample, plus its column-major copy and its channels_last copy where they differ from it."""
    out = []
    for s in samples:
        out.append(s)
        nc = non_contiguous(s)
        if nc is not None:
            out.append(nc)
        cl = channels_last_args(s.args)
        if cl is not None:
            out.append(Sample(s.label + "-channels_last", cl, dict(s.kwargs), s.gradcheck))
    return out


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str,
                 tolerances: dict | None = None) -> None:
    rtol, atol = (tolerances or {}).get(dtype, TOLERANCES[dtype])
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    if actual.is_floating_point():
        torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=atol, equal_nan=True,
                                   msg=lambda m: f"{what}: {m}")
    else:
        assert torch.equal(actual, expected), f"{what}: {actual} != {expected}"
