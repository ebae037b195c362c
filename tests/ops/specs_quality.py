"""Harness specs of the "feature-norm quality" op family (pyfacex/ops/quality.py)."""
from __future__ import annotations

import torch

import pyfacex.ops as ops
from harness import BadInput, OpSpec, Sample

STATS = torch.tensor([4.0, 1.0, 3.0, 0.5])  # [μˡ, σˡ, μᵍ, σᵍ]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _rows(gen, rows, d, dtype, device, scale=1.0):
    return (scale * torch.randn(rows, d, generator=gen)).to(dtype).to(device)


# ---------------------------------------------------------------- lgaf_fusion

def _lgaf_samples(dtype, device):
    gen = _gen()
    stats = STATS.to(device)
    # Norms near the means, so qualities fall inside the clip range and weights vary per row.
    near = [Sample(f"B{b}-d{d}", (_rows(gen, b, d, dtype, device, 4 / d**0.5),
                                  _rows(gen, b, d, dtype, device, 3 / d**0.5), stats),
                   gradcheck=False)
            for b, d in ((5, 16), (3, 33))]
    # Norms far from the means: both qualities clipped, so the weights are locally constant and the
    # detached-norm gradient equals the true one: finite differences can check it.
    far_stats = torch.tensor([100.0, 1.0, 0.0, 0.1], device=device)
    saturated = Sample("saturated", (_rows(gen, 4, 8, dtype, device), _rows(gen, 4, 8, dtype, device, 10.0), far_stats))
    empty = Sample("empty-batch", (_rows(gen, 0, 8, dtype, device), _rows(gen, 0, 8, dtype, device), stats))
    return [*near, saturated, empty]


def _lgaf_bad(device):
    x = torch.randn(4, 8, device=device)
    return [
        BadInput("local-1d", (x[0], x[0], STATS), ValueError, "local must be 2-D"),
        BadInput("shape-mismatch", (x, x[:, :4], STATS), ValueError, "global_ must have the shape of local"),
        BadInput("dtype-mismatch", (x, x.double(), STATS), TypeError, "global_ must have local's dtype"),
        BadInput("local-int", (x.long(), x.long(), STATS), TypeError, "local must have dtype float32"),
        BadInput("stats-short", (x, x, STATS[:2]), ValueError, r"stats must be \(4,\)"),
        BadInput("stats-float64", (x, x, STATS.double()), TypeError, "stats must have dtype float32"),
        BadInput("stats-zero-std", (x, x, torch.tensor([1.0, 0.0, 1.0, 1.0])), ValueError, "std entries must be > 0"),
    ]


def _lgaf_native(dtype, device):
    local, global_ = torch.randn(5, 8, dtype=dtype, device=device), torch.randn(5, 8, dtype=dtype, device=device)
    stats = STATS.to(device)
    return [
        (torch.ops.pyfacex.lgaf_fusion.default, (local.requires_grad_(), global_.requires_grad_(), stats, 0.333)),
        (torch.ops.pyfacex.lgaf_fusion_backward.default,
         (torch.randn_like(local), local.detach(), global_.detach(), stats, 0.333)),
    ]


# ---------------------------------------------------------------- memory_inject / memory_write_

def _stamps(classes, device):
    # never written (−1), fresh, at the window's edge (iteration − stamp == delta_t) and stale.
    pattern = torch.tensor([-1, 10, 5, 4, 0, 9])
    return pattern.repeat(classes // 6 + 1)[:classes].to(device)


ITERATION, DELTA_T = 10, 5


def _inject_samples(dtype, device):
    gen = _gen(1)
    samples = []
    for vpl in (False, True):
        for classes, d in ((13, 16), (7, 33)):
            weight = _rows(gen, classes, d, dtype, device)
            memory = _rows(gen, classes, d, dtype, device, 0.3)
            samples.append(Sample(f"{'vpl' if vpl else 'qaface'}-C{classes}-d{d}",
                                  (weight, memory, _stamps(classes, device), ITERATION, DELTA_T),
                                  {"vpl": vpl, "lam": 0.15}))
        samples.append(Sample(f"{'vpl' if vpl else 'qaface'}-C0",
                              (_rows(gen, 0, 8, dtype, device), _rows(gen, 0, 8, dtype, device),
                               torch.zeros(0, dtype=torch.int64, device=device), ITERATION, DELTA_T), {"vpl": vpl}))
    return samples


def _inject_bad(device):
    w = torch.randn(6, 4, device=device)
    s = _stamps(6, device)
    return [
        BadInput("memory-shape", (w, w[:, :2], s, 1, 1), ValueError, "memory must have the shape of weight"),
        BadInput("memory-dtype", (w, w.double(), s, 1, 1), TypeError, "memory must have weight's dtype"),
        BadInput("stamps-int32", (w, w, s.int(), 1, 1), TypeError, "stamps must have dtype int64"),
        BadInput("stamps-length", (w, w, s[:5], 1, 1), ValueError, "stamps must have C = 6 entries"),
        BadInput("negative-iteration", (w, w, s, -1, 1), ValueError, "iteration must be an int >= 0"),
        BadInput("negative-delta", (w, w, s, 1, -2), ValueError, "delta_t must be an int >= 0"),
        BadInput("lam-out-of-range", (w, w, s, 1, 1), ValueError, r"lam must be in \[0, 1\]",
                 {"vpl": True, "lam": 1.5}),
    ]


def _inject_native(dtype, device):
    w = torch.randn(6, 8, dtype=dtype, device=device)
    m, s = torch.randn_like(w), _stamps(6, device)
    active = (s >= 0) & (ITERATION - s <= DELTA_T)
    calls = []
    for vpl in (False, True):
        calls.append((torch.ops.pyfacex.memory_inject.default,
                      (w.clone().requires_grad_(), m, s, ITERATION, DELTA_T, 0.15, vpl)))
        calls.append((torch.ops.pyfacex.memory_inject_backward.default, (torch.randn_like(w), w, active, 0.15, vpl)))
    return calls


def _write_samples(dtype, device):
    gen = _gen(2)
    d = 12
    samples = []
    # Class 3 three times (the last sample wins), −1 skipped; distinct labels; B = 0; C = 0 (a
    # shard that holds none of the batch's classes).
    for classes, labels in ((9, [3, -1, 3, 8, 0, 3]), (9, [1, 2, 4, 5, 6]), (9, []), (0, [-1, -1])):
        batch = len(labels)
        memory = _rows(gen, classes, d, dtype, device)
        features = _rows(gen, batch, d, dtype, device, 5.0)
        scale = torch.rand(batch, generator=gen).to(device)
        samples.append(Sample(f"C{classes}-labels{labels}",
                              (memory, _stamps(classes, device), features,
                               torch.tensor(labels, dtype=torch.int64, device=device), scale, 12)))
    # f = 0 samples write nothing (QAFace, Sec. 3.4): class 2 f>0 then f=0 (the first stays), class 5
    # f=0 then f>0 (the second), class 7 two f>0 (the last), class 4 f=0 alone (untouched, its stamp
    # too), class 1 f=0 between two f>0 and a −1 in between (the third).
    labels = [2, 2, 5, 5, 7, 7, 4, 1, 1, -1, 1]
    scale = torch.tensor([0.7, 0.0, 0.0, 0.4, 0.3, 0.9, 0.0, 0.5, 0.0, 0.8, 0.6], device=device)
    samples.append(Sample("f0-duplicates", (_rows(gen, 9, d, dtype, device), _stamps(9, device),
                                            _rows(gen, len(labels), d, dtype, device, 5.0),
                                            torch.tensor(labels, dtype=torch.int64, device=device), scale, 12)))
    # every sample f = 0: nothing changes.
    samples.append(Sample("all-f0", (_rows(gen, 9, d, dtype, device), _stamps(9, device),
                                     _rows(gen, 3, d, dtype, device),
                                     torch.tensor([0, 3, 0], device=device), torch.zeros(3, device=device), 12)))
    return samples


def _call_write(public, sample):
    """memory_write_ mutates its buffers: run it on contiguous copies and compare the buffers."""
    memory, stamps, *rest = sample.args
    memory, stamps = memory.contiguous().clone(), stamps.clone()
    public(memory, stamps, *rest, **sample.kwargs)
    return memory, stamps


def _write_bad(device):
    m, s = torch.randn(6, 4, device=device), _stamps(6, device)
    f, y = torch.randn(3, 4, device=device), torch.tensor([0, 1, 2], device=device)
    return [
        BadInput("label-too-large", (m, s, f, torch.tensor([0, 6, 1], device=device), None, 1), ValueError,
                 r"labels must be in \[-1, C = 6\), got labels\[1\] = 6"),
        BadInput("label-below-minus-one", (m, s, f, torch.tensor([0, -2, 1], device=device), None, 1), ValueError,
                 r"C = 6\), got labels\[1\] = -2"),
        BadInput("labels-float", (m, s, f, y.float(), None, 1), TypeError, "labels must have dtype int64"),
        BadInput("labels-length", (m, s, f, y[:2], None, 1), ValueError, "labels must have B = 3 entries"),
        BadInput("features-width", (m, s, f[:, :3], y, None, 1), ValueError, "features must have d = 4 columns"),
        BadInput("features-nan", (m, s, torch.full_like(f, float("nan")), y, None, 1), ValueError,
                 "features has non-finite"),
        BadInput("scale-length", (m, s, f, y, torch.ones(2), 1), ValueError, "scale must have B = 3 entries"),
        BadInput("scale-negative", (m, s, f, y, torch.tensor([1.0, -0.5, 0.0], device=device), 1), ValueError,
                 "scale must be >= 0"),
        BadInput("memory-noncontiguous", (m.t().contiguous().t(), s, f, y, None, 1), ValueError, "must be contiguous"),
        BadInput("stamps-length", (m, s[:4], f, y, None, 1), ValueError, "stamps must have C = 6 entries"),
    ]


def _write_native(dtype, device):
    m, s = torch.randn(6, 8, dtype=dtype, device=device), _stamps(6, device)
    f = torch.randn(4, 8, dtype=dtype, device=device)
    scale = torch.tensor([0.5, 0.7, 0.0, 0.9], device=device)  # the second sample of class 5 has f = 0
    return [(torch.ops.pyfacex.memory_write_.default, (m, s, f, torch.tensor([5, -1, 5, 0], device=device), scale, 3))]


# ---------------------------------------------------------------- element-wise maps (reference-only, backends=())

def _away_from(z: torch.Tensor, *points: float, margin: float = 0.05) -> torch.Tensor:
    """``z`` with the values within ``margin`` of a kink or jump moved 2·margin away from it, so that
    finite differences and the half-precision rounding stay on one side."""
    for p in points:
        z = torch.where((z - p).abs() < margin, z + 2 * margin * torch.where(z >= p, 1.0, -1.0), z)
    return z


def _standardized_samples(dtype, device):
    gen = _gen(3)

    def t(*values_or_shape, scale=1.0, shift=0.0):
        return (shift + scale * torch.randn(*values_or_shape, generator=gen)).to(dtype).to(device)

    return [
        Sample("B7-float-stats", (t(7, scale=3.0, shift=20.0), 20.0, 4.0)),
        # NormStats passes its 0-d buffers
        Sample("B5-scalar-tensors", (t(5, scale=3.0, shift=20.0), torch.tensor(19.0, device=device).to(dtype),
                                     torch.tensor(3.5, device=device).to(dtype))),
        Sample("B6-per-sample", (t(6, scale=3.0, shift=20.0), t(6, shift=20.0), t(6, scale=0.1, shift=4.0))),
        Sample("B5x3-per-column", (t(5, 3, scale=3.0, shift=20.0), t(3, shift=20.0), t(3, scale=0.1, shift=4.0))),
        Sample("empty-batch", (t(0), 20.0, 4.0)),
    ]


def _standardized_bad(device):
    norms = torch.tensor([18.0, 20.0, 25.0], device=device)
    return [
        BadInput("norms-not-tensor", (norms.tolist(), 20.0, 4.0), TypeError, "norms must be a torch.Tensor, got list"),
        BadInput("norms-int", (norms.long(), 20.0, 4.0), TypeError, "norms must have dtype float32"),
        BadInput("mean-shape", (norms, torch.zeros(2, device=device), 4.0), ValueError,
                 r"mean must broadcast with norms' shape \(3,\), got shape \(2,\)"),
        BadInput("std-shape", (norms, 20.0, torch.ones(3, 2, 2, device=device)), ValueError,
                 r"std must broadcast with norms' shape \(3,\), got shape \(3, 2, 2\)"),
        BadInput("mean-not-a-number", (norms, "20", 4.0), TypeError, "mean must be a float or a tensor, got str"),
    ]


def _quality_samples(dtype, device):
    gen = _gen(4)
    # ẑ over [−6, 6]: LGAF's h·ẑ clipped at ±1 on both sides (kinks at ẑ = ±1/h kept away)
    z = lambda *shape: _away_from(6 * (2 * torch.rand(*shape, generator=gen) - 1), 1 / 0.333, -1 / 0.333, 2.0, -2.0)  # noqa: E731
    return [
        Sample("B9", (z(9).to(dtype).to(device),)),
        Sample("B4x3-h0.5", (z(4, 3).to(dtype).to(device),), {"h": 0.5}),
        Sample("empty-batch", (z(0).to(dtype).to(device),)),
    ]


def _qaface_samples(dtype, device):
    gen = _gen(5)
    # ẑ over [−4, 3]: f jumps to 0 below −τ; the jump kept away from
    z = lambda *shape, tau: _away_from(7 * torch.rand(*shape, generator=gen) - 4, -tau)  # noqa: E731
    return [
        Sample("B9", (z(9, tau=2.0).to(dtype).to(device),)),
        Sample("B4x3-tau1.5", (z(4, 3, tau=1.5).to(dtype).to(device), 1.5)),
        Sample("empty-batch", (z(0, tau=2.0).to(dtype).to(device),)),
    ]


def _z_bad(device):
    z = torch.tensor([-3.0, 0.0, 1.5], device=device)
    return [
        BadInput("z-not-tensor", (z.tolist(),), TypeError, "z must be a torch.Tensor, got list"),
        BadInput("z-int", (z.long(),), TypeError, "z must have dtype float32"),
    ]


STANDARDIZED_NORM = OpSpec("standardized_norm", ops.standardized_norm, _standardized_samples, None, _standardized_bad,
                           grad_args=(0,), backends=())
LGAF_QUALITY = OpSpec("lgaf_quality", ops.lgaf_quality, _quality_samples, None, _z_bad, grad_args=(0,), backends=())
QAFACE_WEIGHT = OpSpec("qaface_weight", ops.qaface_weight, _qaface_samples, None, _z_bad, grad_args=(0,), backends=())


SPECS = [
    OpSpec("lgaf_fusion", ops.lgaf_fusion, _lgaf_samples, _lgaf_native, _lgaf_bad, grad_args=(0, 1)),
    OpSpec("memory_inject", ops.memory_inject, _inject_samples, _inject_native, _inject_bad, grad_args=(0,)),
    OpSpec("memory_write_", ops.memory_write_, _write_samples, _write_native, _write_bad, call=_call_write),
    STANDARDIZED_NORM,
    LGAF_QUALITY,
    QAFACE_WEIGHT,
]
