"""The op contract (docs/design.md "Op contract"), run on every op that an op family lists in its specs module."""
from __future__ import annotations

import pytest
import torch

import pyfacex.ops as ops
from harness import (
    BadInput,
    OpSpec,
    Sample,
    assert_close,
    channels_last_args,
    checked_backends,
    clone_sample,
    with_variants,
)
from specs_attention import SPECS as ATTENTION_SPECS
from specs_margin import SPECS as MARGIN_SPECS
from specs_quality import SPECS as QUALITY_SPECS
from specs_sets import SPECS as SETS_SPECS

SPECS: list[OpSpec] = [*SETS_SPECS, *QUALITY_SPECS, *MARGIN_SPECS, *ATTENTION_SPECS]
DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=pytest.mark.cuda)]


def backend_params():
    for spec in SPECS:
        for backend in checked_backends(spec):
            yield pytest.param(spec, backend, id=f"{spec.name}-{backend}")


def dtype_params():
    for spec in SPECS:
        for backend in checked_backends(spec):
            for dtype in spec.dtypes:
                yield pytest.param(spec, backend, dtype, id=f"{spec.name}-{backend}-{str(dtype)[6:]}")


def _require(spec: OpSpec, backend: str, device: str) -> None:
    """Skip unless ``backend`` runs ``spec``'s op on ``device``; the reference always does (and
    reference-only ops are unknown to ``available_backends``)."""
    if backend == "reference":
        return
    if backend not in ops.available_backends(device, op=spec.op):
        reason = ops.native_unavailable_reason(device) or f"{spec.name} has no {backend} kernels for {device}"
        pytest.skip(f"{backend} is unavailable on {device}: {reason}")


def _run(spec: OpSpec, backend: str, sample: Sample, grad_seed: int):
    """Outputs of ``spec`` on ``backend`` and the gradients of a random projection of them."""
    with ops.use_backend(backend):
        outputs = spec.run(sample)
    grads = ()
    leaves = [sample.args[i] for i in spec.grad_args]
    differentiable = [o for o in outputs if isinstance(o, torch.Tensor) and o.requires_grad]
    if leaves and differentiable:
        gen = torch.Generator().manual_seed(grad_seed)
        loss = sum((o.float() * torch.randn(o.shape, generator=gen).to(o.device)).sum() for o in differentiable)
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return outputs, grads


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec,backend,dtype", list(dtype_params()))
def test_parity_with_reference(spec: OpSpec, backend: str, dtype: torch.dtype, device: str):
    """Every backend matches the reference, forward and backward, in every dtype and layout.

    A reference-only op (``backends=()``) is checked on its reference against the reference in
    float32 on contiguous copies of the same values: output dtype, half precision and layout."""
    _require(spec, backend, device)
    for sample in with_variants(spec.samples(dtype, torch.device(device))):
        mine = clone_sample(sample, requires_grad=spec.grad_args)
        # The oracle runs in float32 on the same (already rounded) values.
        oracle = clone_sample(sample, dtype=torch.float32 if dtype != torch.float64 else None,
                              requires_grad=spec.grad_args, contiguous=backend == "reference")
        out, grads = _run(spec, backend, mine, grad_seed=0)
        ref_out, ref_grads = _run(spec, "reference", oracle, grad_seed=0)
        assert len(out) == len(ref_out), sample.label
        first = sample.args[0]
        for i, (a, e) in enumerate(zip(out, ref_out)):
            if a.is_floating_point() and isinstance(first, torch.Tensor) and first.is_floating_point():
                expected = spec.output_dtype(first.dtype) if spec.output_dtype else first.dtype
                assert a.dtype == expected, f"{sample.label}: output {i} dtype {a.dtype}, expected {expected}"
            assert_close(a, e, dtype, f"{spec.name}[{backend}] {sample.label} output {i}", spec.tolerances)
        # zip would stop at the shorter: an output cut off the graph would skip every gradient check.
        assert len(grads) == len(ref_grads), f"{sample.label}: {len(grads)} gradients, reference {len(ref_grads)}"
        for i, (a, e) in enumerate(zip(grads, ref_grads)):
            assert (a is None) == (e is None), f"{sample.label}: grad {i} presence differs"
            if a is not None:
                assert_close(a, e, dtype, f"{spec.name}[{backend}] {sample.label} grad {i}", spec.tolerances)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec,backend", [p for p in backend_params() if p.values[0].grad_args])
def test_gradcheck_float64(spec: OpSpec, backend: str, device: str):
    _require(spec, backend, device)
    for sample in spec.samples(torch.float64, torch.device(device)):
        s = clone_sample(sample, requires_grad=spec.grad_args)
        if not s.gradcheck or any(s.args[i].numel() == 0 for i in spec.grad_args):
            continue

        def fn(*leaves):
            args = list(s.args)
            for i, leaf in zip(spec.grad_args, leaves):
                args[i] = leaf
            with ops.use_backend(backend):
                outputs = spec.run(Sample(s.label, tuple(args), s.kwargs))
            return tuple(o for o in outputs if o.is_floating_point())  # masks and indices have no gradient

        assert torch.autograd.gradcheck(fn, [s.args[i] for i in spec.grad_args], eps=1e-6, atol=1e-5), sample.label


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec", [s for s in SPECS if "native" in s.backends and s.native_calls], ids=str)
def test_opcheck_native(spec: OpSpec, device: str):
    _require(spec, "native", device)
    for dtype in (torch.float32, torch.float64):
        for op, args in spec.native_calls(dtype, torch.device(device)):
            torch.library.opcheck(op, args)
            moved = channels_last_args(args)  # the fake kernels must report the kernels' output strides
            if moved is not None:
                torch.library.opcheck(op, moved)


def bad_input_params():
    for spec in SPECS:
        cases: list[BadInput] = spec.bad_inputs(torch.device("cpu"))
        assert cases, f"{spec.name} lists no bad inputs"
        # the reference and native for an op that dispatches; a reference-only op has only its reference
        backends = ("reference", "native") if spec.backends else ("reference",)
        for case in cases:
            for backend in backends:
                yield pytest.param(spec, case, backend, id=f"{spec.name}-{case.label}-{backend}")


@pytest.mark.parametrize("spec,case,backend", list(bad_input_params()))
def test_bad_input_errors(spec: OpSpec, case: BadInput, backend: str):
    """Bad input raises a clear error naming the argument, whatever the backend."""
    _require(spec, backend, "cpu")
    with ops.use_backend(backend), pytest.raises(case.error, match=case.match):
        spec.public(*case.args, **case.kwargs)
