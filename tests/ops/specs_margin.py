"""Harness specs of the "margin" op family (pyfacex/ops/margin.py)."""
from __future__ import annotations

import dataclasses

import torch

import pyfacex.ops as ops
from harness import BadInput, OpSpec, Sample

# (label, kwargs, gradcheck): the margins of the published heads, label smoothing, insightface's
# straight-through gradient (not the derivative of the forward, so finite differences cannot check it).
MARGINS = [
    ("arcface", {"m2": 0.5}, True),
    ("cosface", {"m2": 0.0, "m3": 0.4}, True),
    ("sphereface", {"m1": 1.35, "m2": 0.0}, True),
    ("combined-smoothing", {"m1": 1.1, "m2": 0.2, "m3": 0.1, "label_smoothing": 0.1}, True),
    ("arcface-straight-through", {"m2": 0.5, "grad": "straight_through"}, False),
]


# Every output is a reduction over the C classes of exponentials of s-scaled logits, and the half
# dtypes round the normalised embeddings before the logits: summation order and that rounding show
# beyond the element-wise tolerances.
TOLERANCES = {torch.float32: (1e-4, 1e-5), torch.float16: (2e-2, 1e-2), torch.bfloat16: (5e-2, 5e-2)}


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _labels(gen, rows, classes, device, ignored=(1,)):
    labels = torch.randint(0, max(classes, 1), (rows,), generator=gen) if classes else torch.full((rows,), -1)
    for i in ignored:
        if i < rows:
            labels[i] = -1
    return labels.to(device)


def _problem(gen, rows, classes, d, dtype, device):
    # s = 8 keeps the softmax away from one-hot, so every class's gradient is visible.
    x = (3.0 * torch.randn(rows, d, generator=gen)).to(dtype).to(device)
    weight = (0.1 * torch.randn(classes, d, generator=gen)).to(dtype).to(device)
    return x, weight, _labels(gen, rows, classes, device)


# ---------------------------------------------------------------- margin_cross_entropy

def _loss_samples(dtype, device):
    gen = _gen()
    samples = []
    x, weight, labels = _problem(gen, 5, 13, 8, dtype, device)
    for label, kwargs, gradcheck in MARGINS:
        samples.append(Sample(f"{label}-B5-C13", (x, weight, labels), {"s": 8.0, **kwargs}, gradcheck))
    # 600 classes cross the native kernel's tile edge (512). Parity checks its gradients; finite
    # differences over 600×d weights would take half a minute.
    x, weight, labels = _problem(gen, 7, 600, 16, dtype, device)
    samples.append(Sample("arcface-B7-C600", (x, weight, labels), {"s": 8.0, "m2": 0.5}, gradcheck=False))
    x, weight, labels = _problem(gen, 6, 9, 8, dtype, device)
    m2, m3 = ops.adaface_margins(torch.linspace(5, 25, 6), torch.tensor([15.0, 5.0]))
    samples.append(Sample("adaface-per-sample-margins", (x, weight, labels), {"s": 8.0, "m2": m2.to(device), "m3": m3.to(device)}))
    return samples


def _loss_call(public, sample):
    return tuple(public(*sample.args, **sample.kwargs, return_details=True))


def _loss_bad(device):
    x = torch.randn(4, 8, device=device)
    weight = torch.randn(10, 8, device=device)
    labels = torch.tensor([0, 3, 9, -1], device=device)
    nan = x.clone()
    nan[2, 5] = float("nan")
    return [
        BadInput("label-too-large", (x, weight, torch.tensor([0, 10, 1, 2])), ValueError, r"labels must be in \[-1, num_classes = 10\)"),
        BadInput("label-below-minus-one", (x, weight, torch.tensor([0, -2, 1, 2])), ValueError, r"labels\[1\] = -2"),
        BadInput("dim-mismatch", (x, weight[:, :6], labels), ValueError, r"weight must be \(num_classes, dim\) with dim = 8"),
        BadInput("non-finite-embeddings", (nan, weight, labels), ValueError, "x has non-finite values"),
        BadInput("empty-batch", (x[:0], weight, labels[:0]), ValueError, "empty batch"),
        BadInput("labels-length", (x, weight, labels[:3]), ValueError, "labels must have B = 4"),
        BadInput("labels-float", (x, weight, labels.float()), TypeError, "labels must have dtype"),
        BadInput("x-1d", (x[0], weight, labels), ValueError, "x must be 2-D"),
        BadInput("no-classes", (x, weight[:0], labels), ValueError, "weight has no classes"),
        BadInput("all-ignored", (x, weight, torch.full((4,), -1)), ValueError, "every label is -1"),
        BadInput("grad-mode", (x, weight, labels), ValueError, "grad must be one of", {"grad": "detach"}),
        BadInput("m1-below-one", (x, weight, labels), ValueError, "m1 must be >= 1", {"m1": 0.5}),
        BadInput("m2-shape", (x, weight, labels), ValueError, r"m2 must be a float or a \(B,\)", {"m2": torch.zeros(3)}),
        BadInput("smoothing", (x, weight, labels), ValueError, "label_smoothing", {"label_smoothing": 1.0}),
    ]


def _native_calls(dtype, device):
    gen = _gen(2)
    x, weight, labels = _problem(gen, 5, 11, 8, dtype, device)
    xn = torch.nn.functional.normalize(x, dim=1)
    _, target, slope = ops.margin_targets(xn, weight, labels, 8.0, m2=0.5)
    outputs = torch.ops.pyfacex.cosine_lse(xn, weight, labels, target, slope, 8.0)
    grads = torch.randn(3, 5, generator=gen, dtype=dtype).to(device)
    return [
        (torch.ops.pyfacex.cosine_lse.default, (xn.requires_grad_(), weight.requires_grad_(), labels, target, slope, 8.0)),
        (torch.ops.pyfacex.cosine_lse.default, (xn.detach()[:0], weight.detach(), labels[:0], target[:0], slope[:0], 8.0)),
        (torch.ops.pyfacex.cosine_lse_backward.default,
         (*grads, xn.detach(), weight.detach(), outputs[4], labels, target, slope, outputs[0], 8.0)),
    ]


MARGIN_CROSS_ENTROPY = OpSpec(
    name="margin_cross_entropy",
    public=ops.margin_cross_entropy,
    samples=_loss_samples,
    native_calls=None,  # its native op is cosine_lse, opchecked by COSINE_LOGSUMEXP below
    bad_inputs=_loss_bad,
    grad_args=(0, 1),
    call=_loss_call,
    tolerances=TOLERANCES,
)


# ---------------------------------------------------------------- cosine_logsumexp (the shard statistics)

def _lse_samples(dtype, device):
    gen = _gen(3)
    samples = []
    for rows, classes, d in ((5, 13, 8), (3, 1, 16), (6, 530, 9), (0, 5, 8), (4, 0, 8)):
        x, weight, labels = _problem(gen, rows, classes, d, dtype, device)
        xn = torch.nn.functional.normalize(x, dim=1)
        samples.append(Sample(f"B{rows}-C{classes}-d{d}", (xn, weight, labels, 8.0), {"m1": 1.1, "m2": 0.3, "m3": 0.1},
                              gradcheck=classes < 512))
    return samples


def _lse_call(public, sample):
    # The targets come from the embeddings and weights, as margin_cross_entropy makes them, so that
    # finite differences see the target column move with its cosine. row_max and inv_norm are
    # constants for autograd, and finite differences would disagree with their zero gradient; the
    # log-sum-exp they form with sumexp is differentiable everywhere (test_margin.py compares them
    # across backends).
    xn, weight, labels, s = sample.args
    _, target, slope = ops.margin_targets(xn, weight, labels, s, **sample.kwargs)
    out = public(xn, weight, labels, target, slope, s)
    return out.row_max + torch.log(out.sumexp), out.nontarget_sum, out.target


def _lse_bad(device):
    xn = torch.randn(4, 8, device=device)
    weight = torch.randn(10, 8, device=device)
    labels = torch.tensor([0, 3, 9, -1], device=device)
    t = torch.zeros(4, device=device)
    return [
        BadInput("target-dtype", (xn, weight, labels, t.double(), t, 8.0), TypeError, "target_logit must have dtype float32"),
        BadInput("slope-length", (xn, weight, labels, t, t[:2], 8.0), ValueError, "target_slope must have B = 4"),
        BadInput("weight-dtype", (xn, weight.double(), labels, t, t, 8.0), TypeError, "weight must have x's dtype"),
        BadInput("label-too-large", (xn, weight, labels + 1, t, t, 8.0), ValueError, "labels must be in"),
    ]


COSINE_LOGSUMEXP = OpSpec(
    name="cosine_logsumexp",
    public=ops.cosine_logsumexp,
    samples=_lse_samples,
    native_calls=_native_calls,
    bad_inputs=_lse_bad,
    grad_args=(0, 1),
    call=_lse_call,
    tolerances=TOLERANCES,
    dtypes=(torch.float32,),  # its statistics are float32 for every input dtype but float64
)

# Triton is verified here under the interpreter in every dtype: its tl.dot on bf16 is wrong there, so the
# kernels widen half operands after rounding them (pyfacex/triton/_common.py operand), as a GPU's tensor
# cores see them.
SPECS = [
    MARGIN_CROSS_ENTROPY,
    COSINE_LOGSUMEXP,
    dataclasses.replace(MARGIN_CROSS_ENTROPY, name="margin_cross_entropy-gpu", backends=("triton",),
                        dtypes=(torch.float32, torch.float16, torch.bfloat16)),
    dataclasses.replace(COSINE_LOGSUMEXP, name="cosine_logsumexp-gpu", backends=("triton",)),
]
