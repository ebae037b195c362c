"""Margin losses: the published formulas by hand, the eager composition, the gradient modes."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import pyfacex.ops as ops


def _problem(rows=6, classes=11, d=8, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = (3 * torch.randn(rows, d, generator=gen, dtype=dtype)).requires_grad_()
    weight = (0.1 * torch.randn(classes, d, generator=gen, dtype=dtype)).requires_grad_()
    labels = torch.randint(0, classes, (rows,), generator=gen)
    labels[1] = -1
    return x, weight, labels


def test_combined_margin_published_formulas_by_hand():
    c = torch.tensor([0.6], dtype=torch.float64)  # θ = acos 0.6, sin θ = 0.8
    arc = ops.combined_margin(c, m2=0.5)
    torch.testing.assert_close(arc, torch.tensor([0.6 * math.cos(0.5) - 0.8 * math.sin(0.5)], dtype=torch.float64))
    torch.testing.assert_close(ops.combined_margin(c, m3=0.4), torch.tensor([0.2], dtype=torch.float64))
    # cos 2θ
    torch.testing.assert_close(ops.combined_margin(c, m1=2.0), torch.tensor([2 * 0.36 - 1], dtype=torch.float64))
    combined = ops.combined_margin(c, m1=2.0, m2=0.3, m3=0.2)
    torch.testing.assert_close(combined, torch.tensor([math.cos(2 * math.acos(0.6) + 0.3) - 0.2], dtype=torch.float64))


def test_exact_margin_continues_past_pi_with_slope_one_and_straight_through_wraps():
    # θ = 2.9, θ + 0.5 > π: the exact mode continues φ linearly in cos θ from θ* = π − 0.5, where it is
    # −1, with slope 1 (the target keeps pulling); insightface's current code computes cos(θ + m) there,
    # which has turned back up.
    c = torch.tensor([math.cos(2.9)], dtype=torch.float64, requires_grad=True)
    exact = ops.combined_margin(c, m2=0.5)
    assert exact.item() == pytest.approx(math.cos(2.9) - math.cos(math.pi - 0.5) - 1.0)
    (g,) = torch.autograd.grad(exact.sum(), c)
    assert g.item() == pytest.approx(1.0)
    straight = ops.combined_margin(c, m2=0.5, grad="straight_through")
    assert straight.item() == pytest.approx(math.cos(3.4))
    (g,) = torch.autograd.grad(straight.sum(), c)
    assert g.item() == 1.0


@pytest.mark.parametrize("m1, m2, m3", [(1.0, 0.5, 0.0), (1.0, 0.3, 0.2), (1.35, 0.0, 0.0), (1.2, 0.25, 0.1)])
def test_exact_margin_is_continuous_and_monotone_over_every_angle(m1, m2, m3):
    """φ(cos θ) rises with cos θ over the whole of [−1, 1] and has no jump where the angle reaches π:
    no sample can lower its loss by turning away from its own class centre."""
    c = torch.linspace(-1.0, 1.0, 20001, dtype=torch.float64)
    phi = ops.combined_margin(c, m1=m1, m2=m2, m3=m3)
    steps = phi.diff()
    assert bool((steps > 0).all())
    # no jump: away from θ = 0 (where the slope m1·sin(m1θ + m2)/sin θ grows without bound) every step
    # of 1e-4 in cos θ moves φ by little
    assert steps[c[1:] <= 0.9].max().item() < 1e-3
    near = torch.tensor([math.cos((math.pi - m2) / m1)], dtype=torch.float64)
    below, above = (ops.combined_margin(near - 1e-9, m1=m1, m2=m2, m3=m3),
                    ops.combined_margin(near + 1e-9, m1=m1, m2=m2, m3=m3))
    assert above.item() == pytest.approx(-1.0 - m3, abs=1e-6) and below.item() == pytest.approx(-1.0 - m3, abs=1e-6)


def test_exact_margin_continuation_with_per_sample_margins():
    """AdaFace's (B,) m2: each sample's continuation starts at its own θ* = π − m2."""
    m2 = torch.tensor([0.4, -0.4], dtype=torch.float64)
    c = torch.tensor([math.cos(3.0), math.cos(3.0)], dtype=torch.float64)
    phi = ops.combined_margin(c, m2=m2, m3=0.1)
    assert phi[0].item() == pytest.approx(math.cos(3.0) - math.cos(math.pi - 0.4) - 1.1)   # 3.0 + 0.4 > π
    assert phi[1].item() == pytest.approx(math.cos(3.0 - 0.4) - 0.1)                       # on the arc


def test_exact_margin_gradient_is_the_derivative():
    c = torch.tensor([-0.3, 0.2, 0.7, 0.95], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(ops.combined_margin(c, m1=1.2, m2=0.3).sum(), c)
    theta = torch.acos(c.detach())
    torch.testing.assert_close(g, 1.2 * torch.sin(1.2 * theta + 0.3) / torch.sin(theta))


@pytest.mark.parametrize("grad", ["exact", "straight_through"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_fused_equals_the_eager_composition(backend, grad, smoothing):
    x, weight, labels = _problem()
    kwargs = dict(s=16.0, m1=1.1, m2=0.3, m3=0.1, grad=grad)
    fused = ops.margin_cross_entropy(x, weight, labels, label_smoothing=smoothing, **kwargs)
    cos = F.normalize(x) @ F.normalize(weight).t()
    eager = F.cross_entropy(ops.margin_logits(cos, labels, **kwargs), labels, ignore_index=-1,
                            label_smoothing=smoothing)
    torch.testing.assert_close(fused, eager)
    for a, b in zip(torch.autograd.grad(fused, (x, weight)), torch.autograd.grad(eager, (x, weight))):
        torch.testing.assert_close(a, b)


def test_straight_through_gradient_is_softmax_minus_onehot_times_s(backend):
    x, weight, labels = _problem(seed=1)
    s = 16.0
    loss = ops.margin_cross_entropy(x, weight, labels, s=s, m2=0.5, grad="straight_through")
    grads = torch.autograd.grad(loss, (x, weight))
    # The logits' values carry the margin, the cosines' gradient is s·(softmax − onehot)/B_valid.
    with torch.no_grad():
        cos = F.normalize(x) @ F.normalize(weight).t()
        probs = torch.softmax(ops.margin_logits(cos, labels, s=s, m2=0.5), dim=1)
        valid = labels >= 0
        grad_cos = s * (probs - F.one_hot(labels.clamp(min=0), weight.shape[0])) * valid[:, None] / valid.sum()
    cos = F.normalize(x) @ F.normalize(weight).t()
    expected = torch.autograd.grad(cos, (x, weight), grad_cos)
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b)


def test_loss_by_hand_on_a_tiny_case(backend):
    # x along e0; classes at angles 0.6 rad (target), π/2 and π from it.
    x = torch.tensor([[2.0, 0.0]], dtype=torch.float64)
    weight = torch.tensor([[math.cos(0.6), math.sin(0.6)], [0.0, 3.0], [-1.0, 0.0]], dtype=torch.float64)
    s, m = 4.0, 0.5
    target = s * math.cos(0.6 + m)
    expected = -target + math.log(math.exp(target) + math.exp(0.0) + math.exp(-s))
    loss = ops.margin_cross_entropy(x, weight, torch.tensor([0]), s=s, m2=m)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_ignored_rows_do_not_count(backend):
    x, weight, labels = _problem(seed=2)
    keep = labels >= 0
    all_rows = ops.margin_cross_entropy(x, weight, labels, s=16.0, return_details=True)
    subset = ops.margin_cross_entropy(x[keep], weight, labels[keep], s=16.0)
    torch.testing.assert_close(all_rows.loss, subset)
    assert all_rows.per_sample[1] == 0 and all_rows.target_cos[1] == 0
    torch.testing.assert_close(all_rows.loss, all_rows.per_sample[keep].mean())
    torch.testing.assert_close(all_rows.target_cos[keep],
                               (F.normalize(x) @ F.normalize(weight).t())[keep, labels[keep]].detach())


def test_statistics_agree_across_backends():
    x, weight, labels = _problem(rows=5, classes=700, d=16, dtype=torch.float32, seed=3)
    xn, weight = F.normalize(x.detach(), dim=1), weight.detach()
    _, target, slope = ops.margin_targets(xn, weight, labels, 8.0, m2=0.5)
    outputs = {}
    for name in ops.available_backends("cpu"):
        with ops.use_backend(name):
            outputs[name] = ops.cosine_logsumexp(xn, weight, labels, target, slope, 8.0)
    for name, out in outputs.items():
        for field in ("row_max", "inv_norm"):
            torch.testing.assert_close(getattr(out, field), getattr(outputs["reference"], field), msg=f"{name} {field}")


def test_adaface_margins_by_hand():
    norms = torch.tensor([10.0, 20.0, 40.0])
    m2, m3 = ops.adaface_margins(norms, torch.tensor([20.0, 10.0]), m=0.4, h=0.5)
    z = torch.tensor([-0.5, 0.0, 1.0])  # clip(0.5·(norm − 20)/10, −1, 1)
    torch.testing.assert_close(m2, -0.4 * z)
    torch.testing.assert_close(m3, 0.4 * z + 0.4)


def test_mixed_dtypes_cast_embeddings_to_the_weight_dtype():
    x, weight, labels = _problem(dtype=torch.float32)
    loss16 = ops.margin_cross_entropy(x.detach().half(), weight, labels, s=16.0)
    loss32 = ops.margin_cross_entropy(x.detach().half().float(), weight, labels, s=16.0)
    assert loss16.dtype == torch.float16
    torch.testing.assert_close(loss16.float(), loss32, rtol=1e-3, atol=1e-3)


_MARGINS = [(1.0, 0.5, 0.0), (2.0, 0.0, 0.0), (1.35, 0.3, 0.2), (1.0, 0.0, 0.4), (1.0, 1.2, 0.0)]


@pytest.mark.parametrize("grad", ops.margin.GRAD_MODES)
@pytest.mark.parametrize("m1,m2,m3", _MARGINS)
def test_closed_form_slope_is_the_autograd_derivative(m1, m2, m3, grad):
    # every regime: both clamps of cos θ, θ → 0 and π, the angle on the arc and past π
    edges = torch.tensor([-1.0, -1.0 + 1e-8, -0.999, 0.999, 1.0 - 1e-8, 1.0], dtype=torch.float64)
    cos = torch.cat([torch.linspace(-1.0, 1.0, 401, dtype=torch.float64), edges]).requires_grad_()
    (expected,) = torch.autograd.grad(ops.combined_margin(cos, m1, m2, m3, grad).sum(), cos)
    torch.testing.assert_close(ops.combined_margin_slope(cos.detach(), m1, m2, grad), expected, rtol=1e-12, atol=1e-12)


def test_closed_form_slope_with_per_sample_margins():
    cos = torch.linspace(-1.0, 1.0, 101, dtype=torch.float64).requires_grad_()
    m2 = torch.linspace(-0.4, 0.8, 101, dtype=torch.float64)  # AdaFace: negative m2 holds the angle at 0
    (expected,) = torch.autograd.grad(ops.combined_margin(cos, 1.0, m2, 0.1).sum(), cos)
    torch.testing.assert_close(ops.combined_margin_slope(cos.detach(), 1.0, m2), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["reference", "native"])
def test_margin_cross_entropy_compiles_as_one_graph(backend):
    if backend not in ops.available_backends("cpu", op="margin_cross_entropy"):
        pytest.skip(f"{backend} is unavailable: {ops.native_unavailable_reason('cpu')}")
    x, weight, labels = _problem(dtype=torch.float32)

    def loss(x, weight):
        with ops.use_backend(backend):
            return ops.margin_cross_entropy(x, weight, labels, m2=0.5)

    expected = loss(x, weight)
    expected_grads = torch.autograd.grad(expected, (x, weight))
    torch._dynamo.reset()
    actual = torch.compile(loss, fullgraph=True)(x, weight)  # fullgraph: a graph break raises
    torch.testing.assert_close(actual, expected)
    for a, e in zip(torch.autograd.grad(actual, (x, weight)), expected_grads):
        torch.testing.assert_close(a, e)


@pytest.mark.parametrize("filter_threshold", [None, 0.05])
def test_native_keeps_its_dots_within_the_budget_and_recomputes_them_above(monkeypatch, filter_threshold):
    # Within _KEEP_DOTS_BYTES the native forward keeps its dot products (in tile order) and the backward
    # reads them; above it the backward recomputes them. Both give the reference's gradients; 1100
    # classes are three tiles of 512, the last one partial.
    import pyfacex.ops.margin as margin

    if "native" not in ops.available_backends("cpu", op="margin_cross_entropy"):
        pytest.skip(ops.native_unavailable_reason("cpu"))
    x, weight, labels = _problem(rows=7, classes=1100, d=16)
    xn = F.normalize(x.detach(), dim=1).requires_grad_()
    _, target, slope = ops.margin_targets(xn.detach(), weight.detach(), labels, 16.0, m2=0.5)

    def grads(backend):
        # Every statistic with a gradient (sum-exp, the non-target sum, the target) reaches the loss.
        with ops.use_backend(backend):
            stats = ops.cosine_logsumexp(xn, weight, labels, target, slope, 16.0, filter_threshold)
        loss = (stats.row_max + stats.sumexp.log() - stats.target + 0.1 * stats.nontarget_sum).sum()
        return torch.autograd.grad(loss, (xn, weight))

    assert margin._keeps_dots(xn, weight)
    dots = torch.ops.pyfacex.cosine_lse(xn, weight, labels, target, slope, 16.0, math.inf, True)[5]
    tiles = [xn.detach() @ weight.detach()[begin:begin + 512].t() for begin in range(0, 1100, 512)]
    torch.testing.assert_close(dots, torch.cat([t.reshape(-1) for t in tiles]))

    reference, kept = grads("reference"), grads("native")
    monkeypatch.setattr(margin, "_KEEP_DOTS_BYTES", 0)
    assert not margin._keeps_dots(xn, weight)
    recomputed = grads("native")
    for a, b, c in zip(kept, recomputed, reference):
        torch.testing.assert_close(a, c)
        torch.testing.assert_close(b, c)
