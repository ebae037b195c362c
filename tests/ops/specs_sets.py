"""Harness specs of the "sets" op family (pyfacex/ops/sets.py)."""
from __future__ import annotations

import torch

import pyfacex.ops as ops
from harness import BadInput, OpSpec, Sample


def _offsets(*sizes: int, device) -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(sizes).cumsum(0).tolist()] if sizes else [0], dtype=torch.int64,
                        device=device)


def _with_ties(x: torch.Tensor) -> torch.Tensor:
    """Quantise so that equal values (ties for the max) are frequent."""
    return (x * 2).round() / 2


def _ragged_samples(dtype: torch.dtype, device: torch.device, *, allow_empty_sets: bool) -> list[Sample]:
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(dtype).to(device)

    samples = [
        Sample("sets-1-3-5-chw", (rand(9, 3, 5, 7), _offsets(1, 3, 5, device=device))),
        Sample("one-set-2d", (rand(4, 1030), _offsets(4, device=device))),  # crosses a CPU chunk boundary
        Sample("ties", (_with_ties(rand(12, 6, 4)), _offsets(5, 7, device=device)), gradcheck=False),
        Sample("empty-batch", (rand(0, 3, 2), _offsets(device=device))),
        Sample("empty-features", (rand(5, 0, 2), _offsets(2, 3, device=device))),
    ]
    if allow_empty_sets:
        samples.append(Sample("empty-sets", (rand(6, 4, 3), _offsets(0, 2, 0, 4, 0, device=device))))
    return samples


def _bad_inputs(public, *, min_dim: int):
    def cases(device):
        x = torch.randn(*([6] + [3] * (min_dim - 1)), device=device)
        ok = _offsets(2, 4, device=device)
        cases = [
            BadInput("offsets-not-from-0", (x, torch.tensor([1, 6], device=device)), ValueError,
                     r"offsets\[0\] must be 0"),
            BadInput("offsets-decreasing", (x, torch.tensor([0, 4, 2, 6], device=device)), ValueError,
                     "non-decreasing"),
            BadInput("offsets-short", (x, torch.tensor([0, 2, 5], device=device)), ValueError,
                     r"offsets\[-1\] must equal x.shape\[0\] = 6"),
            BadInput("offsets-long", (x, torch.tensor([0, 2, 7], device=device)), ValueError,
                     r"offsets\[-1\] must equal"),
            BadInput("offsets-int32", (x, ok.int()), TypeError, "offsets must have dtype int64"),
            BadInput("offsets-2d", (x, ok[None]), ValueError, "offsets must be 1-D"),
            BadInput("offsets-empty", (x, ok[:0]), ValueError, "offsets must have b\\+1 >= 1"),
            BadInput("x-int", (x.long(), ok), TypeError, "x must have dtype float32"),
            BadInput("x-not-tensor", (x.tolist(), ok), TypeError, "x must be a torch.Tensor"),
            BadInput("x-too-few-dims",
                     (torch.ones([1] * (min_dim - 1), device=device), torch.tensor([0, 1], device=device)),
                     ValueError, f"x must have at least {min_dim} dims"),
            BadInput("offsets-other-device", (x, ok.to("meta")), ValueError, "offsets must be on x's device"),
        ]
        if public is ops.set_max:
            cases.append(BadInput("empty-set", (x, _offsets(2, 0, 4, device=device)), ValueError, "set 1 is empty"))
        return cases

    return cases


def _native_calls(forward, backward, grad_shape):
    def calls(dtype, device):
        x = torch.randn(7, 3, 2, 2, dtype=dtype, device=device, requires_grad=True)
        offsets = _offsets(3, 4, device=device)
        grad = torch.randn(grad_shape(x, offsets), dtype=dtype, device=device)
        return [(forward, (x, offsets)), (backward, (grad, x.detach(), offsets))]

    return calls


# ---------------------------------------------------------------- dense forms (b, T, *rest)
#
# They dispatch (through the packed ops, declared under their own names), so they are checked on
# native against the reference like the packed ops; opcheck is the packed ops'.

def _dense_samples(dtype, device, *, min_dim: int):
    gen = torch.Generator().manual_seed(1)

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(dtype).to(device)

    if dtype == torch.float64:
        # gradcheck only (parity runs the other dtypes): one small set each, since the dense forms'
        # gradients are the packed ops', gradchecked on their own samples.
        return [Sample("b2-T3-c3", (rand(2, 3, 3),)), Sample("b1-T1-c2", (rand(1, 1, 2),))]
    samples = [
        Sample("b3-T4-chw", (rand(3, 4, 2, 3, 2),)),
        Sample("b2-T3-c7", (rand(2, 3, 7),)),
        Sample("b1-T1-c5", (rand(1, 1, 5),)),
        Sample("ties", (_with_ties(rand(2, 5, 3, 2)),)),
        Sample("empty-batch", (rand(0, 3, 4),)),
    ]
    if min_dim == 2:
        samples.append(Sample("b4-T3", (rand(4, 3),)))  # (b, T): one value per member
    else:
        samples.append(Sample("empty-sets", (rand(2, 0, 3),)))  # T = 0: every set empty
    return samples


def _dense_bad(public, *, min_dim: int):
    def cases(device):
        x = torch.randn(*([2, 3] + [4] * (min_dim - 2)), device=device)
        cases = [
            BadInput("x-int", (x.long(),), TypeError, "x must have dtype float32"),
            BadInput("x-not-tensor", (x.tolist(),), TypeError, "x must be a torch.Tensor"),
            BadInput("x-too-few-dims", (x[0],), ValueError, f"x must have at least {min_dim} dims"),
        ]
        if public is ops.set_max_dense:
            cases.append(BadInput("no-members", (torch.zeros(2, 0, 3, device=device),), ValueError,
                                  "x must have T >= 1"))
        return cases

    return cases


SPECS = [
    OpSpec(
        name="set_max",
        public=ops.set_max,
        samples=lambda dtype, device: _ragged_samples(dtype, device, allow_empty_sets=False),
        native_calls=_native_calls(
            torch.ops.pyfacex.set_max.default if hasattr(torch.ops.pyfacex, "set_max") else None,
            torch.ops.pyfacex.set_max_backward.default if hasattr(torch.ops.pyfacex, "set_max") else None,
            lambda x, o: (o.numel() - 1, *x.shape[1:]),
        ),
        bad_inputs=_bad_inputs(ops.set_max, min_dim=1),
        grad_args=(0,),
    ),
    OpSpec(
        name="global_concat",
        public=ops.global_concat,
        samples=lambda dtype, device: _ragged_samples(dtype, device, allow_empty_sets=True),
        native_calls=_native_calls(
            torch.ops.pyfacex.global_concat.default if hasattr(torch.ops.pyfacex, "global_concat") else None,
            torch.ops.pyfacex.global_concat_backward.default if hasattr(torch.ops.pyfacex, "global_concat") else None,
            lambda x, o: (x.shape[0], 2 * x.shape[1], *x.shape[2:]),
        ),
        bad_inputs=_bad_inputs(ops.global_concat, min_dim=2),
        grad_args=(0,),
    ),
    OpSpec(
        name="set_max_dense",
        public=ops.set_max_dense,
        samples=lambda dtype, device: _dense_samples(dtype, device, min_dim=2),
        native_calls=None,
        bad_inputs=_dense_bad(ops.set_max_dense, min_dim=2),
        grad_args=(0,),
    ),
    OpSpec(
        name="global_concat_dense",
        public=ops.global_concat_dense,
        samples=lambda dtype, device: _dense_samples(dtype, device, min_dim=3),
        native_calls=None,
        bad_inputs=_dense_bad(ops.global_concat_dense, min_dim=3),
        grad_args=(0,),
    ),
]
