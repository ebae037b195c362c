"""Harness specs of the set-attention op family (pyfacex/ops/attention.py)."""
from __future__ import annotations

import dataclasses

import torch

import pyfacex.ops as ops
from harness import BadInput, OpSpec, Sample

# Segment sizes: ragged, a single token, an empty segment, and one long enough to span several of
# the Triton kernels' 16-row blocks.
# [0, 2, 5, 7, 10]: equal lengths apart (2, 3, 2, 3), which the CPU path groups by a permutation
TOKEN_OFFSETS = [[0, 3, 3, 20, 21], [0, 5, 10, 15], [0, 1], [0, 2, 5], [0, 2, 5, 7, 10]]


# Outputs are softmax-weighted sums over a segment: summation order (and, in half precision, the
# rounding of the scores before the exponential) shows beyond the element-wise tolerances.
TOLERANCES = {torch.float32: (1e-4, 1e-5), torch.float16: (2e-2, 1e-2), torch.bfloat16: (5e-2, 5e-2)}


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _tokens(gen, n, d, dtype, device):
    return torch.randn(n, d, generator=gen).to(dtype).to(device)


def _qkv_samples(dtype, device, *, scale):
    gen = _gen()
    samples = []
    for bounds in TOKEN_OFFSETS:
        n = bounds[-1]
        for dk, dv in ((8, 8), (4, 6)):
            args = (_tokens(gen, n, dk, dtype, device), _tokens(gen, n, dk, dtype, device),
                    _tokens(gen, n, dv, dtype, device), torch.tensor(bounds, device=device))
            samples.append(Sample(f"segments{len(bounds) - 1}-N{n}-dk{dk}-dv{dv}", args + ((0.5,) if scale else ())))
    empty = (_tokens(gen, 0, 4, dtype, device),) * 3 + (torch.tensor([0], device=device),)
    samples.append(Sample("empty", empty + ((0.5,) if scale else ())))
    return samples


def _qkv_bad(device, *, scale):
    q = torch.randn(6, 4, device=device)
    offsets = torch.tensor([0, 2, 6], device=device)
    extra = (1.0,) if scale else ()
    return [
        BadInput("offsets-short", (q, q, q, torch.tensor([0, 2, 5]), *extra), ValueError, r"offsets\[-1\] must equal"),
        BadInput("offsets-decreasing", (q, q, q, torch.tensor([0, 4, 2, 6]), *extra), ValueError, "non-decreasing"),
        BadInput("offsets-int32", (q, q, q, offsets.int(), *extra), TypeError, "offsets must have dtype int64"),
        BadInput("k-shape", (q, q[:, :3], q, offsets, *extra), ValueError, "k must have q's shape"),
        BadInput("v-rows", (q, q, q[:5], offsets, *extra), ValueError, "v must have N = 6 rows"),
        BadInput("v-dtype", (q, q, q.double(), offsets, *extra), TypeError, "v must have q's dtype"),
        BadInput("q-3d", (q[None], q, q, offsets, *extra), ValueError, "q must be 2-D"),
    ]


def _interpreter_samples(dtype, device):
    """The softmax samples, with float64 gradcheck only on the smallest: finite differences under the
    Triton interpreter cost about 0.1 s per evaluation."""
    samples = _qkv_samples(dtype, device, scale=True)
    if dtype == torch.float64:
        samples = [s for s in samples if s.args[0].shape[0] <= 5]
    return samples


SOFTMAX = OpSpec(
    name="segment_softmax_attention",
    public=ops.segment_softmax_attention,
    samples=lambda dtype, device: _qkv_samples(dtype, device, scale=True),
    native_calls=None,  # the native path is batched matmuls per group of equal-length segments
    bad_inputs=lambda device: _qkv_bad(device, scale=True),
    grad_args=(0, 1, 2),
    tolerances=TOLERANCES,
)

LINEAR = OpSpec(
    name="segment_linear_attention",
    public=ops.segment_linear_attention,
    samples=lambda dtype, device: _qkv_samples(dtype, device, scale=False),
    native_calls=None,  # batched matmuls per group of equal-length segments
    bad_inputs=lambda device: _qkv_bad(device, scale=False),
    grad_args=(0, 1, 2),
    tolerances=TOLERANCES,
)


# ---------------------------------------------------------------- lit_attention

def _lit_samples(dtype, device):
    gen = _gen(1)
    samples = []
    d, qk = 8, 4
    # Weights of 1/√d scale, as a trained 1×1 projection: scores of order 1, not a one-hot softmax.
    weights = tuple(_tokens(gen, rows, d, dtype, device) / d**0.5 for rows in (qk, qk, d))
    for relation in ops.RELATIONS:
        for segment in (None, 2):
            x = _tokens(gen, 6 * d * 2 * 3, 1, dtype, device).reshape(6, d, 2, 3)
            offsets = torch.tensor([0, 1, 1, 6], device=device)  # sets of 1, 0 and 5 images
            samples.append(Sample(f"{relation}-segment{segment}", (x, offsets, *weights),
                                  {"relation": relation, "scale": 0.5, "segment": segment}))
    # Biases of the weights' scale.
    biases = tuple(_tokens(gen, rows, 1, dtype, device).reshape(rows) / d**0.5 for rows in (qk, qk, d))
    samples.append(Sample("softmax_b-biases", (x, offsets, *weights, *biases), {"segment": 2}))
    samples.append(Sample("empty", (x[:0], torch.tensor([0], device=device), *weights)))
    return samples


def _lit_bad(device):
    x = torch.randn(5, 8, 2, 2, device=device)
    wq, wv = torch.randn(4, 8, device=device), torch.randn(8, 8, device=device)
    offsets = torch.tensor([0, 2, 5], device=device)
    return [
        BadInput("offsets-vs-batch", (x, torch.tensor([0, 2, 4]), wq, wq, wv), ValueError,
                 r"offsets\[-1\] must equal x.shape\[0\] = 5"),
        BadInput("x-3d", (x[0], offsets, wq, wq, wv), ValueError, "x must be 4-D"),
        BadInput("w_v-shape", (x, offsets, wq, wq, wq), ValueError, r"w_v must be \(8, 8\)"),
        BadInput("w_q-channels", (x, offsets, wq[:, :6], wq, wv), ValueError, r"w_q must be \(qk_dim, 8\)"),
        BadInput("w_k-vs-w_q", (x, offsets, wq, wq[:3], wv), ValueError, r"w_k must be \(4, 8\)"),
        BadInput("relation", (x, offsets, wq, wq, wv), ValueError, "relation must be one of", {"relation": "dot"}),
        BadInput("segment", (x, offsets, wq, wq, wv), ValueError, "segment must be None or an int", {"segment": 0}),
        BadInput("missing-q", (x, offsets, None, wq, wv), ValueError, "needs w_q and w_k"),
    ]


LIT = OpSpec(
    name="lit_attention",
    public=ops.lit_attention,
    samples=_lit_samples,
    native_calls=None,
    bad_inputs=_lit_bad,
    grad_args=(0, 2, 3, 4),
    tolerances=TOLERANCES,
)

# Without gradients, lit_attention runs the C++ inference kernel on CPU (csrc/ops/cpu/attention.cpp):
# the same samples and layouts, no gradients, and opcheck of the kernel.

def _no_grad_call(public, sample):
    with torch.no_grad():
        return (public(*sample.args, **sample.kwargs),)


def _lit_inference_calls(dtype, device):
    calls = []
    for sample in _lit_samples(dtype, device):
        x, offsets, w_q, w_k, w_v, *biases = sample.args
        relation = sample.kwargs.get("relation", "softmax_b")
        bounds = torch.tensor(ops.segment_bounds(offsets.tolist(), sample.kwargs.get("segment")), device=device)
        qk = (None, None) if relation == "softmax_a" else (w_q, w_k)
        biases = tuple(biases) or (None, None, None)
        calls.append((torch.ops.pyfacex.lit_attention_inference.default,
                      (x, bounds, *qk, w_v, *biases, relation, sample.kwargs.get("scale", 1.0))))
    return calls


LIT_INFERENCE = dataclasses.replace(LIT, name="lit_attention-inference", grad_args=(),
                                    call=_no_grad_call, native_calls=_lit_inference_calls)

# ---------------------------------------------------------------- segment_bounds (reference-only, backends=())

def _bounds_samples(dtype, device):
    # Host lists in, a host list out: no tensor, so one dtype; the harness runs it on every sample and
    # layout variant there is (none) and compares the bounds exactly (test_attention.py checks their values).
    offsets = [0, 2, 9, 9, 10, 14]  # sets of 2, 7, 0, 1 and 4 images
    return [
        Sample("documented-example", ([0, 2, 9], 3)),
        *(Sample(f"ragged-segment{segment}", (offsets, segment)) for segment in (None, 1, 3, 20)),
        Sample("lit-one-set", ([4, 11], 3)),  # as nn.LIT segments one set of a batch
        Sample("no-sets", ([0], 3)),
    ]


def _bounds_call(public, sample):
    return (torch.tensor(public(*sample.args, **sample.kwargs), dtype=torch.int64),)


def _bounds_bad(device):
    return [
        BadInput("offsets-tensor", (torch.tensor([0, 2, 9]), 3), TypeError,
                 r"offsets must be a list of ints \(host values: call .tolist\(\) on a tensor\), got Tensor"),
        BadInput("offsets-float", ([0, 2.0, 9], 3), TypeError,
                 r"offsets must be a list of ints, got offsets\[1\] = 2.0 \(float\)"),
        BadInput("offsets-decreasing", ([0, 4, 2, 9], 3), ValueError,
                 r"offsets must be non-decreasing, but offsets\[2\] = 2 < offsets\[1\] = 4"),
        BadInput("segment-zero", ([0, 2, 9], 0), ValueError, "segment must be None or an int θ > 0"),
        BadInput("segment-float", ([0, 2, 9], 2.5), ValueError, "segment must be None or an int θ > 0"),
    ]


SEGMENT_BOUNDS = OpSpec(
    name="segment_bounds",
    public=ops.segment_bounds,
    samples=_bounds_samples,
    native_calls=None,
    bad_inputs=_bounds_bad,
    backends=(),
    dtypes=(torch.float32,),  # no floating input: one run
    call=_bounds_call,
)

# Triton is verified here under the interpreter in every dtype: its tl.dot on bf16 is wrong there, so the
# kernels widen half operands after rounding them (pyfacex/triton/_common.py operand), as a GPU's tensor
# cores see them.
SPECS = [
    SOFTMAX,
    LINEAR,
    LIT,
    LIT_INFERENCE,
    dataclasses.replace(SOFTMAX, name="segment_softmax_attention-gpu", backends=("triton",),
                        dtypes=(torch.float32, torch.float16, torch.bfloat16), samples=_interpreter_samples),
    SEGMENT_BOUNDS,
]
