"""Harness specs of the "margin" op family (pyfacex/ops/margin.py)."""
from __future__ import annotations

import dataclasses
import math

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
    samples.append(Sample("adaface-per-sample-margins", (x, weight, labels),
                          {"s": 8.0, "m2": m2.to(device), "m3": m3.to(device)}))
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
        BadInput("label-too-large", (x, weight, torch.tensor([0, 10, 1, 2])), ValueError,
                 r"labels must be in \[-1, num_classes = 10\)"),
        BadInput("label-below-minus-one", (x, weight, torch.tensor([0, -2, 1, 2])), ValueError, r"labels\[1\] = -2"),
        BadInput("dim-mismatch", (x, weight[:, :6], labels), ValueError,
                 r"weight must be \(num_classes, dim\) with dim = 8"),
        BadInput("non-finite-embeddings", (nan, weight, labels), ValueError, "x has non-finite values"),
        BadInput("empty-batch", (x[:0], weight, labels[:0]), ValueError, "empty batch"),
        BadInput("labels-length", (x, weight, labels[:3]), ValueError, "labels must have B = 4"),
        BadInput("labels-float", (x, weight, labels.float()), TypeError, "labels must have dtype"),
        BadInput("x-1d", (x[0], weight, labels), ValueError, "x must be 2-D"),
        BadInput("no-classes", (x, weight[:0], labels), ValueError, "weight has no classes"),
        BadInput("all-ignored", (x, weight, torch.full((4,), -1)), ValueError, "every label is -1"),
        BadInput("grad-mode", (x, weight, labels), ValueError, "grad must be one of", {"grad": "detach"}),
        BadInput("m1-below-one", (x, weight, labels), ValueError, "m1 must be >= 1", {"m1": 0.5}),
        BadInput("m2-shape", (x, weight, labels), ValueError, r"m2 must be a float or a \(B,\)",
                 {"m2": torch.zeros(3)}),
        BadInput("smoothing", (x, weight, labels), ValueError, "label_smoothing", {"label_smoothing": 1.0}),
    ]


def _native_calls(dtype, device):
    gen = _gen(2)
    x, weight, labels = _problem(gen, 5, 11, 8, dtype, device)
    xn = torch.nn.functional.normalize(x, dim=1)
    _, target, slope = ops.margin_targets(xn, weight, labels, 8.0, m2=0.5)
    outputs = torch.ops.pyfacex.cosine_lse(xn, weight, labels, target, slope, 8.0, 0.1, True)
    grads = torch.randn(3, 5, generator=gen, dtype=dtype).to(device)
    backward_args = (*grads, xn.detach(), weight.detach(), outputs[4], labels, target, slope, outputs[0])
    return [
        *((torch.ops.pyfacex.cosine_lse.default,
           (xn.requires_grad_(), weight.requires_grad_(), labels, target, slope, 8.0, math.inf, keep))
          for keep in (False, True)),
        (torch.ops.pyfacex.cosine_lse.default,  # inter-class filtering
         (xn, weight, labels, target, slope, 8.0, 0.1, True)),
        (torch.ops.pyfacex.cosine_lse.default,
         (xn.detach()[:0], weight.detach(), labels[:0], target[:0], slope[:0], 8.0, math.inf, True)),
        # The backward with the forward's kept dot products, and recomputing them.
        *((torch.ops.pyfacex.cosine_lse_backward.default, (*backward_args, dots, 8.0, 0.1))
          for dots in (outputs[5], outputs[5][:0])),
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
        samples.append(Sample(f"B{rows}-C{classes}-d{d}", (xn, weight, labels, 8.0, None),
                              {"m1": 1.1, "m2": 0.3, "m3": 0.1}, gradcheck=classes < 512))
    # Inter-class filtering at cos 0.1: about a third of these cosines lie above it, none within 1e-3 of it
    # (finite differences must not cross it), and the 530 classes cross the native kernel's tile edge.
    for rows, classes, d in ((6, 17, 8), (5, 530, 9)):
        x, weight, labels = _problem(gen, rows, classes, d, dtype, device)
        xn = torch.nn.functional.normalize(x, dim=1)
        samples.append(Sample(f"filtered-B{rows}-C{classes}-d{d}", (xn, _away_from(xn, weight, 0.1), labels, 8.0, 0.1),
                              {"m2": 0.5}, gradcheck=classes < 512))
    return samples


def _away_from(xn, weight, threshold, gap=1e-3):
    """``weight`` with every class whose cosine with some row lies within ``gap`` of ``threshold`` turned
    away (negated: its cosines change sign)."""
    cos = xn.double() @ torch.nn.functional.normalize(weight.double(), dim=1).T
    near = ((cos - threshold).abs() < gap).any(0) & ~((-cos - threshold).abs() < gap).any(0)
    return torch.where(near[:, None], -weight, weight)


def _lse_call(public, sample):
    # The targets come from the embeddings and weights, as margin_cross_entropy makes them, so that
    # finite differences see the target column move with its cosine. row_max and inv_norm are
    # constants for autograd, and finite differences would disagree with their zero gradient; the
    # log-sum-exp they form with sumexp is differentiable everywhere (test_margin.py compares them
    # across backends).
    xn, weight, labels, s, filter_threshold = sample.args
    _, target, slope = ops.margin_targets(xn, weight, labels, s, **sample.kwargs)
    out = public(xn, weight, labels, target, slope, s, filter_threshold)
    return out.row_max + torch.log(out.sumexp), out.nontarget_sum, out.target


def _lse_bad(device):
    xn = torch.randn(4, 8, device=device)
    weight = torch.randn(10, 8, device=device)
    labels = torch.tensor([0, 3, 9, -1], device=device)
    t = torch.zeros(4, device=device)
    return [
        BadInput("target-dtype", (xn, weight, labels, t.double(), t, 8.0), TypeError,
                 "target_logit must have dtype float32"),
        BadInput("slope-length", (xn, weight, labels, t, t[:2], 8.0), ValueError, "target_slope must have B = 4"),
        BadInput("weight-dtype", (xn, weight.double(), labels, t, t, 8.0), TypeError, "weight must have x's dtype"),
        BadInput("label-too-large", (xn, weight, labels + 1, t, t, 8.0), ValueError, "labels must be in"),
        BadInput("filter-threshold-range", (xn, weight, labels, t, t, 8.0, 1.5), ValueError,
                 r"filter_threshold must be None or a cosine in \[-1, 1\], got 1.5"),
        BadInput("filter-threshold-type", (xn, weight, labels, t, t, 8.0, "0.3"), ValueError, "filter_threshold"),
        BadInput("filter-negative-s", (xn, weight, labels, t, t, -8.0, 0.3), ValueError, "s must be > 0"),
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

# ---------------------------------------------------------------- reference-only helpers (backends=())
#
# The margins act on B target cosines with plain autograd and never dispatch: the harness checks their
# reference in each dtype against float32, float64 gradcheck, and the bad inputs. Margin tensors are
# passed positionally so that they take the sample's dtype as the cosines do.

# φ goes through acos and cos in the input dtype: in half precision the angle θ ∈ [0, π] is rounded
# (ulp 2e-3 in float16, 1.6e-2 in bfloat16 near π) before its cosine and sine, beyond the
# element-wise tolerances (float32 keeps them).
ANGLE_TOLERANCES = {torch.float16: (2e-2, 1e-2), torch.bfloat16: (5e-2, 5e-2)}


def _kinks(m1, m2) -> list:
    """cos θ where φ has a kink: the angle m1·θ + m2 reaches π (past it, the straight continuation)
    or 0 (a negative m2 holds the angle at 0); per sample for a tensor m2."""
    m2 = torch.as_tensor(m2, dtype=torch.float64)
    return [torch.cos((math.pi - m2) / m1), torch.where(m2 < 0, torch.cos(-m2 / m1), 2.0)]


def _cosines(gen, shape, m1=1.0, m2=0.0):
    """Cosines in [−0.95, 0.95] at least 0.03 from every kink of φ (and of its slope), so that finite
    differences and the half-precision rounding of the angle stay on one side of it."""
    c = torch.rand(shape, generator=gen, dtype=torch.float64) * 1.9 - 0.95
    for k in _kinks(m1, m2):  # a per-sample kink broadcasts along the rows of c
        c = torch.where((c - k).abs() < 0.03, k + torch.where(k >= 0, -0.06, 0.06), c)
    return c


def _adaface(rows):
    return torch.linspace(-0.4, 0.4, rows), torch.linspace(0.0, 0.8, rows)  # m2 = −m·ẑ, m3 = m·ẑ + m


def _margin_samples(dtype, device):
    gen = _gen(4)
    samples = []
    for rows, (label, kwargs, gradcheck) in zip((7, 13, 5, 6, 7), MARGINS):
        m1, m2, m3 = kwargs.get("m1", 1.0), kwargs.get("m2", 0.0), kwargs.get("m3", 0.0)
        cos = _cosines(gen, (rows,), m1, m2).to(dtype).to(device)
        samples.append(Sample(f"{label}-B{rows}", (cos, m1, m2, m3, kwargs.get("grad", "exact")), gradcheck=gradcheck))
    m2, m3 = _adaface(9)
    samples.append(Sample("adaface-per-sample-margins", (_cosines(gen, (9,), 1.0, m2).to(dtype).to(device), 1.0,
                                                         m2.to(dtype).to(device), m3.to(dtype).to(device))))
    samples.append(Sample("empty-batch", (torch.zeros(0, dtype=dtype, device=device), 1.0, 0.5, 0.0)))
    return samples


def _margin_bad(device, *, slope=False):
    cos = torch.tensor([0.3, -0.2, 0.9, 0.5], device=device)
    extra = () if slope else (0.0,)  # combined_margin_slope takes no m3
    cases = [
        BadInput("grad-mode", (cos, 1.0, 0.5, *extra, "detach"), ValueError, "grad must be one of"),
        BadInput("cos-2d", (cos[:, None], 1.0, 0.5, *extra), ValueError, r"cos must be 1-D, got shape \(4, 1\)"),
        BadInput("cos-int", (cos.long(), 1.0, 0.5, *extra), TypeError, "cos must have dtype float32"),
        BadInput("cos-not-tensor", (cos.tolist(), 1.0, 0.5, *extra), TypeError, "cos must be a torch.Tensor, got list"),
        BadInput("m2-length", (cos, 1.0, torch.zeros(3, device=device), *extra), ValueError,
                 r"m2 must be a float or a \(B,\) = \(4,\) tensor \(one per cos row\), got shape \(3,\)"),
        BadInput("m2-not-a-number", (cos, 1.0, "0.5", *extra), TypeError,
                 r"m2 must be a float or a \(B,\) tensor, got str"),
    ]
    if not slope:
        cases.append(BadInput("m3-length", (cos, 1.0, 0.5, torch.zeros(4, 1, device=device)), ValueError,
                              r"m3 must be a float or a \(B,\) = \(4,\) tensor"))
    return cases


COMBINED_MARGIN = OpSpec(
    name="combined_margin",
    public=ops.combined_margin,
    samples=_margin_samples,
    native_calls=None,
    bad_inputs=_margin_bad,
    grad_args=(0,),
    backends=(),
    tolerances=ANGLE_TOLERANCES,
)

COMBINED_MARGIN_SLOPE = OpSpec(
    name="combined_margin_slope",
    public=ops.combined_margin_slope,
    # the slope takes no m3: drop it (and keep the grad mode, the fourth argument)
    samples=lambda dtype, device: [dataclasses.replace(s, args=s.args[:3] + s.args[4:])
                                   for s in _margin_samples(dtype, device)],
    native_calls=None,
    bad_inputs=lambda device: _margin_bad(device, slope=True),
    backends=(),
    tolerances=ANGLE_TOLERANCES,
)


def _adaface_samples(dtype, device):
    gen = _gen(5)
    stats = torch.tensor([15.0, 5.0], device=device)  # [μ, σ + eps]
    norms = (15.0 + 8.0 * torch.randn(11, generator=gen)).clamp_min(0.5)  # some standardised norms clipped at ±1
    return [
        Sample("B11", (norms.to(dtype).to(device), stats)),
        Sample("B11-h0.5-m0.5", (norms.to(dtype).to(device), stats), {"m": 0.5, "h": 0.5}),
        Sample("empty-batch", (torch.zeros(0, dtype=dtype, device=device), stats)),
    ]


def _adaface_bad(device):
    norms, stats = torch.tensor([10.0, 20.0, 30.0], device=device), torch.tensor([20.0, 10.0], device=device)
    return [
        BadInput("stats-length", (norms, stats[:1]), ValueError,
                 r"stats must be \(2,\) = \[mean, std \+ eps\], got shape \(1,\)"),
        BadInput("stats-int", (norms, stats.long()), TypeError, "stats must have dtype float32"),
        BadInput("stats-other-device", (norms, stats.to("meta")), ValueError, "stats must be on norms's device"),
        BadInput("norms-2d", (norms[:, None], stats), ValueError, r"norms must be 1-D, got shape \(3, 1\)"),
        BadInput("norms-int", (norms.long(), stats), TypeError, "norms must have dtype float32"),
        BadInput("norms-not-tensor", (norms.tolist(), stats), TypeError, "norms must be a torch.Tensor, got list"),
    ]


ADAFACE_MARGINS = OpSpec(
    name="adaface_margins",
    public=ops.adaface_margins,
    samples=_adaface_samples,
    native_calls=None,
    bad_inputs=_adaface_bad,
    backends=(),
    output_dtype=lambda dtype: torch.float32,  # the margins are float32 whatever the norms' dtype
)


def _logits_samples(dtype, device):
    gen = _gen(6)
    samples = []
    for (rows, classes), (label, kwargs, gradcheck) in zip(((5, 13), (3, 1), (6, 9), (4, 7), (7, 5)), MARGINS):
        m1, m2, m3 = kwargs.get("m1", 1.0), kwargs.get("m2", 0.0), kwargs.get("m3", 0.0)
        cos = _cosines(gen, (rows, classes), m1, m2).to(dtype).to(device)
        samples.append(Sample(f"{label}-B{rows}-C{classes}", (cos, _labels(gen, rows, classes, device), 8.0, m1, m2, m3,
                                                              kwargs.get("grad", "exact")), gradcheck=gradcheck))
    m2, m3 = _adaface(6)
    cos = _cosines(gen, (6, 9), 1.0, m2[:, None]).to(dtype).to(device)
    samples.append(Sample("adaface-per-sample-margins", (cos, _labels(gen, 6, 9, device), 8.0, 1.0,
                                                         m2.to(dtype).to(device), m3.to(dtype).to(device))))
    samples.append(Sample("all-ignored", (_cosines(gen, (3, 4)).to(dtype).to(device),
                                          torch.full((3,), -1, device=device))))
    samples.append(Sample("empty-batch", (torch.zeros(0, 7, dtype=dtype, device=device),
                                          torch.zeros(0, dtype=torch.int64, device=device))))
    return samples


def _logits_bad(device):
    cos = torch.rand(4, 10, device=device)
    labels = torch.tensor([0, 3, 9, -1], device=device)
    return [
        BadInput("cos-1d", (cos[0], labels), ValueError, r"cos must be 2-D, got shape \(10,\)"),
        BadInput("cos-int", (cos.long(), labels), TypeError, "cos must have dtype float32"),
        BadInput("labels-float", (cos, labels.float()), TypeError,
                 "labels must have dtype int64, int32; got torch.float32"),
        BadInput("labels-length", (cos, labels[:3]), ValueError, "labels must have B = 4 entries"),
        BadInput("label-too-large", (cos, labels + 1), ValueError,
                 r"labels must be in \[-1, C = 10\), got labels\[2\] = 10"),
        BadInput("label-below-minus-one", (cos, labels - 1), ValueError, r"got labels\[3\] = -2"),
        BadInput("m2-length", (cos, labels), ValueError, r"m2 must be a float or a \(B,\) = \(4,\) tensor",
                 {"m2": torch.zeros(2)}),
        BadInput("grad-mode", (cos, labels), ValueError, "grad must be one of", {"grad": "detach"}),
    ]


MARGIN_LOGITS = OpSpec(
    name="margin_logits",
    public=ops.margin_logits,
    samples=_logits_samples,
    native_calls=None,
    bad_inputs=_logits_bad,
    grad_args=(0,),
    backends=(),
    tolerances=ANGLE_TOLERANCES,
)


def _targets_samples(dtype, device):
    gen = _gen(7)
    samples = []
    shapes = ((5, 13, 8), (3, 1, 16), (6, 9, 5), (4, 7, 8), (7, 5, 3))
    for (rows, classes, d), (label, kwargs, _) in zip(shapes, MARGINS):
        x, weight, labels = _problem(gen, rows, classes, d, dtype, device)
        xn = torch.nn.functional.normalize(x.double(), dim=1).to(dtype)
        samples.append(Sample(f"{label}-B{rows}-C{classes}-d{d}", (xn, weight, labels, 8.0, kwargs.get("m1", 1.0),
                                                                   kwargs.get("m2", 0.0), kwargs.get("m3", 0.0),
                                                                   kwargs.get("grad", "exact"))))
    x, weight, labels = _problem(gen, 6, 9, 8, dtype, device)
    m2, m3 = _adaface(6)
    xn = torch.nn.functional.normalize(x.double(), dim=1).to(dtype)
    samples.append(Sample("adaface-per-sample-margins", (xn, weight, labels, 8.0, 1.0, m2.to(dtype).to(device),
                                                         m3.to(dtype).to(device))))
    x, weight, labels = _problem(gen, 4, 0, 8, dtype, device)  # a shard without classes: every label −1
    samples.append(Sample("no-classes", (x, weight, labels, 8.0)))
    x, weight, labels = _problem(gen, 0, 5, 8, dtype, device)
    samples.append(Sample("empty-batch", (x, weight, labels, 8.0)))
    return samples


def _targets_bad(device):
    xn = torch.nn.functional.normalize(torch.randn(4, 8, device=device), dim=1)
    weight = torch.randn(10, 8, device=device)
    labels = torch.tensor([0, 3, 9, -1], device=device)
    return [
        BadInput("x-1d", (xn[0], weight, labels, 8.0), ValueError, "x must be 2-D"),
        BadInput("dim-mismatch", (xn, weight[:, :6], labels, 8.0), ValueError,
                 r"weight must be \(num_classes, dim\) with dim = 8"),
        BadInput("weight-dtype", (xn, weight.double(), labels, 8.0), TypeError, "weight must have x's dtype"),
        BadInput("labels-float", (xn, weight, labels.float(), 8.0), TypeError, "labels must have dtype int64"),
        BadInput("labels-length", (xn, weight, labels[:3], 8.0), ValueError, "labels must have B = 4 entries"),
        BadInput("m2-length", (xn, weight, labels, 8.0), ValueError, r"m2 must be a float or a \(B,\) = \(4,\) tensor",
                 {"m2": torch.zeros(5)}),
        BadInput("grad-mode", (xn, weight, labels, 8.0), ValueError, "grad must be one of", {"grad": "detach"}),
    ]


MARGIN_TARGETS = OpSpec(
    name="margin_targets",
    public=ops.margin_targets,
    samples=_targets_samples,
    native_calls=None,
    bad_inputs=_targets_bad,
    backends=(),
    output_dtype=ops.margin.stat_dtype,  # float32 statistics for every input dtype but float64
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
    COMBINED_MARGIN,
    COMBINED_MARGIN_SLOPE,
    ADAFACE_MARGINS,
    MARGIN_LOGITS,
    MARGIN_TARGETS,
]
