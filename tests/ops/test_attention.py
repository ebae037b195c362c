"""Local Information Transfer: segmentation as the paper, equivariance, isolation, the linear path."""
from __future__ import annotations

import math

import pytest
import torch

import pyfacex.nn as pnn
import pyfacex.ops as ops

THETA = 3


def _lit(relation="softmax_b", segment=None, dim=8, seed=0):
    torch.manual_seed(seed)
    lit = pnn.LocalInformationTransfer(dim, relation=relation, segment=segment, scale=0.5).double()
    torch.nn.init.normal_(lit.value.weight, std=dim**-0.5)  # not the identity it starts as
    return lit


def _sets(sizes, dim=8, h=2, w=3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(sizes), dim, h, w, generator=gen, dtype=torch.float64)
    return x, torch.tensor([0, *sizes]).cumsum(0)


@pytest.mark.parametrize("size", range(1, THETA + 4))
def test_segments_are_the_papers(size):
    k = math.ceil(size / THETA)
    bounds = ops.segment_bounds([0, size], THETA)
    lengths = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    assert len(lengths) == k and lengths[:-1] == [THETA] * (k - 1) and lengths[-1] == size - (k - 1) * THETA


@pytest.mark.parametrize("relation", ops.RELATIONS)
def test_segmented_set_equals_its_segments_as_sets(backend, relation):
    sizes = list(range(1, THETA + 4))  # ragged sets of 1 … θ+3 images
    x, offsets = _sets(sizes)
    lit = _lit(relation, segment=THETA)
    whole = lit(x, offsets)
    pieces = torch.tensor(ops.segment_bounds(offsets.tolist(), THETA))
    lit.segment = None
    torch.testing.assert_close(whole, lit(x, pieces))


@pytest.mark.parametrize("relation", ops.RELATIONS)
def test_permuting_a_sets_images_permutes_its_outputs(backend, relation):
    x, offsets = _sets([4, 3])
    lit = _lit(relation)
    perm = torch.tensor([2, 0, 3, 1, 4, 5, 6])
    torch.testing.assert_close(lit(x[perm], offsets), lit(x, offsets)[perm])


@pytest.mark.parametrize("relation", ops.RELATIONS)
def test_sets_are_isolated_bit_for_bit(backend, relation):
    x, offsets = _sets([3, 2, 3, 1])
    lit = _lit(relation)
    changed = x.clone()
    changed[3:5] = torch.randn(2, *x.shape[1:], dtype=x.dtype)  # the second set only
    before, after = lit(x, offsets), lit(changed, offsets)
    keep = torch.tensor([0, 1, 2, 5, 6, 7, 8])
    assert torch.equal(before[keep], after[keep])
    assert not torch.equal(before[3:5], after[3:5])


def test_scaled_dot_equals_the_quadratic_formula(backend):
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(11, d, generator=gen, dtype=torch.float64) for d in (4, 4, 6))
    offsets = torch.tensor([0, 4, 4, 11])
    out = ops.segment_linear_attention(q, k, v, offsets)
    for a, b in ((0, 4), (4, 11)):
        torch.testing.assert_close(out[a:b], (q[a:b] @ k[a:b].t() / (b - a)) @ v[a:b])


def test_softmax_relation_by_definition(backend):
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(7, 5, generator=gen, dtype=torch.float64) for _ in range(3))
    out = ops.segment_softmax_attention(q, k, v, torch.tensor([0, 3, 7]), scale=0.7)
    for a, b in ((0, 3), (3, 7)):
        torch.testing.assert_close(out[a:b], torch.softmax(0.7 * q[a:b] @ k[a:b].t(), dim=1) @ v[a:b])


def test_module_starts_as_the_identity():
    x, offsets = _sets([2, 3])
    lit = pnn.LocalInformationTransfer(8).double()
    assert torch.equal(lit(x, offsets), x)


@pytest.mark.parametrize("relation", ops.RELATIONS)
def test_attention_map_is_the_row_the_forward_uses(relation):
    x, offsets = _sets([2, 5], h=3, w=3)
    lit = _lit(relation, segment=THETA)
    out = lit(x, offsets)
    amap = lit.attention_map(x, offsets, set_index=1, query_image=4, query_region=(1, 2))
    assert amap.shape == (5, 3, 3)
    assert torch.all(amap[:3] == 0)  # images 0-2 of the set are in the other segment (θ = 3)
    if relation != "scaled_dot":
        torch.testing.assert_close(amap.sum(), torch.tensor(1.0, dtype=torch.float64))
    values = lit.value(x[2:7].permute(0, 2, 3, 1)).detach()  # (5, 3, 3, d)
    moved = (amap[..., None] * values).sum((0, 1, 2))
    torch.testing.assert_close(out[6, :, 1, 2], x[6, :, 1, 2] + moved)


def test_module_bad_input():
    with pytest.raises(ValueError, match="qk_dim must be > 0"):
        pnn.LocalInformationTransfer(8, qk_dim=0)
    with pytest.raises(ValueError, match="relation must be one of"):
        pnn.LocalInformationTransfer(8, relation="dot")
    x, offsets = _sets([2, 3])
    lit = pnn.LocalInformationTransfer(8).double()
    with pytest.raises(ValueError, match=r"offsets\[-1\] must equal x.shape\[0\] = 5"):
        lit(x, torch.tensor([0, 2, 4]))
    with pytest.raises(ValueError, match=r"x must have d = 8 channels \(this module's dim\), got 6"):
        lit(x[:, :6], offsets)
    with pytest.raises(ValueError, match=r"x must have d = 4 channels \(this module's dim\), got 5"):
        pnn.LocalInformationTransfer(4)(torch.randn(3, 5, 2, 2), torch.tensor([0, 3]))  # issue 14's example
    with pytest.raises(ValueError, match="must have d = 8 channels"):
        lit.attention_map(x[:, :6], offsets, 0, 0, 0)
    with pytest.raises(ValueError, match=r"query_region must be in \[0, h·w = 6\)"):
        lit.attention_map(x, offsets, 0, 0, 6)
    with pytest.raises(ValueError, match="query_image must be in"):
        lit.attention_map(x, offsets, 0, 2, 0)


@pytest.mark.parametrize("relation", ops.RELATIONS)
def test_compiled_lit_honours_theta(relation):
    # Under torch.compile the offsets' values are not seen while tracing; θ segmentation must still
    # apply (it was silently dropped: the compiled module attended across whole sets).
    x, offsets = _sets([5, 2, 4])
    lit = _lit(relation, segment=2)
    eager = lit(x, offsets)
    compiled = torch.compile(lit, backend="eager", fullgraph=False)
    torch.testing.assert_close(compiled(x, offsets), eager)
    lit.segment = None
    assert (lit(x, offsets) - eager).abs().max() > 1e-3  # θ = 2 changes these sets' outputs


def _aten_path_must_not_run(*args, **kwargs):
    raise AssertionError("lit_attention took the ATen path, not the inference kernel")


@pytest.mark.parametrize("relation, segment, sizes", [
    ("softmax_b", None, (1, 9, 0, 3, 2, 4)),   # 9 images: more than a thread's share, so it runs first, alone
    ("softmax_a", 2, (1, 9, 0, 3, 2, 4)),      # θ = 2: 12 segments, all spread over the threads
    ("scaled_dot", None, (3, 3, 1)),
    ("softmax_b", None, (200, 3)),             # 1200 tokens: scores in blocks of query rows
])
def test_cpu_inference_kernel_equals_the_aten_path(monkeypatch, relation, segment, sizes):
    # Without gradients on CPU, lit_attention runs the C++ kernel (each segment whole on one thread,
    # largest first); with them, the ATen composition. Both must give the same output.
    import pyfacex.ops.attention as attention

    lit = _lit(relation, segment)
    x, offsets = _sets(sizes)
    with ops.use_backend("native"):
        aten = lit(x, offsets)                   # the module's parameters require grad: ATen path
        monkeypatch.setattr(attention, "_lit_attention", _aten_path_must_not_run)
        with torch.no_grad():
            kernel = lit(x, offsets)
    torch.testing.assert_close(kernel, aten.detach())


def test_cpu_inference_kernel_bad_input():
    # The kernel checks what it reads when called directly (pyfacex.ops checks first, with its own words).
    x = torch.randn(5, 8, 2, 2)
    bounds, w_q, w_v = torch.tensor([0, 2, 5]), torch.randn(4, 8), torch.randn(8, 8)
    kernel = torch.ops.pyfacex.lit_attention_inference
    cases = [
        ((x, bounds, w_q, w_q, w_q, None, None, None, "softmax_b", 1.0), r"w_v must be \(8, 8\)"),
        ((x, bounds, w_q, w_q[:3], w_v, None, None, None, "softmax_b", 1.0), r"w_k must be \(4, 8\)"),
        ((x, bounds, None, None, w_v, None, None, None, "scaled_dot", 1.0), "w_q is required"),
        ((x, bounds, w_q, w_q, w_v, None, None, None, "dot", 1.0), "relation must be one of"),
        ((x, bounds, w_q, w_q, w_v.double(), None, None, None, "softmax_b", 1.0), "w_v must have x's dtype"),
        ((x, bounds, w_q, w_q, w_v, torch.randn(3), None, None, "softmax_b", 1.0), r"b_q must be \(4\)"),
        ((x, torch.tensor([0, 2, 4]), w_q, w_q, w_v, None, None, None, "softmax_b", 1.0), "offsets\\[-1\\] must equal"),
        ((x[0], bounds, w_q, w_q, w_v, None, None, None, "softmax_b", 1.0), "x must be 4-D"),
        ((x.requires_grad_(), bounds, w_q, w_q, w_v, None, None, None, "softmax_b", 1.0), "has no backward"),
    ]
    for args, match in cases:
        with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
            kernel(*args)


@pytest.mark.parametrize("op", ["segment_softmax_attention", "segment_linear_attention"])
def test_inference_runs_long_segments_on_views_and_short_ones_grouped(monkeypatch, op):
    # Without gradients, segments of >= _VIEW_MIN_TOKENS tokens attend alone on views and write their
    # rows in place; shorter ones are gathered by length. Both kinds, an empty segment and two equal
    # short lengths in one batch must give the reference's output.
    import pyfacex.ops.attention as attention

    monkeypatch.setattr(attention, "_VIEW_MIN_TOKENS", 5)
    sizes = (3, 7, 0, 1, 9, 3, 5, 2)
    offsets = torch.tensor((0, *sizes)).cumsum(0)
    gen = torch.Generator().manual_seed(4)
    q, k = (torch.randn(sum(sizes), 4, generator=gen, dtype=torch.float64) for _ in range(2))
    v = torch.randn(sum(sizes), 6, generator=gen, dtype=torch.float64)
    viewed = []
    view_calls = attention._softmax_chunks if op == "segment_softmax_attention" else attention._linear_segments
    monkeypatch.setattr(attention, view_calls.__name__,
                        lambda *args, out=None: viewed.append(out is not None) or view_calls(*args, out=out))
    with ops.use_backend("native"), torch.no_grad():
        native = getattr(ops, op)(q, k, v, offsets)
    with ops.use_backend("reference"):
        reference = getattr(ops, op)(q, k, v, offsets)
    torch.testing.assert_close(native, reference)
    assert sorted(viewed) == [False] * 3 + [True] * 3   # lengths 1, 2, 3 grouped; 5, 7, 9 on views
