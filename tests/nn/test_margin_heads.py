"""Margin heads: the published margins, drop-in use, AdaFace's norm statistics, PartialFC in one process."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pyfacex.nn as pnn
import pyfacex.ops as ops


def _batch(rows=8, d=16, classes=20, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rows, d, generator=gen), torch.randint(0, classes, (rows,), generator=gen)


@pytest.mark.parametrize("head,margins", [
    (pnn.ArcFace(16, 20), dict(m1=1.0, m2=0.5, m3=0.0)),
    (pnn.CosFace(16, 20), dict(m1=1.0, m2=0.0, m3=0.4)),
    (pnn.SphereFace(16, 20), dict(m1=1.35, m2=0.0, m3=0.0)),
    (pnn.CombinedMarginHead(16, 20, m1=1.1, m2=0.2, m3=0.1), dict(m1=1.1, m2=0.2, m3=0.1)),
], ids=["arcface", "cosface", "sphereface", "combined"])
def test_heads_are_the_published_margins(head, margins):
    emb, labels = _batch()
    assert head.weight.shape == (20, 16)
    loss = head(emb, labels)
    expected = ops.margin_cross_entropy(emb, head.weight, labels, s=64.0, **margins)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


def test_head_trains_a_separable_problem():
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(5, 16), dim=1)
    labels = torch.arange(5).repeat(8)
    emb = centres[labels] + 0.05 * torch.randn(40, 16)
    head = pnn.ArcFace(16, 5, s=16.0, m=0.2)
    optim = torch.optim.SGD(head.parameters(), lr=1.0)
    first = None
    for _ in range(30):
        loss = head(emb, labels)
        first = first if first is not None else loss.item()
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert loss.item() < 0.25 * first
    predicted = (F.normalize(emb) @ F.normalize(head.weight).t()).argmax(1)
    assert torch.equal(predicted, labels)


def test_adaface_head_is_the_official_formula():
    emb, labels = _batch(seed=1)
    emb = emb * torch.linspace(0.5, 3.0, 8)[:, None]  # spread the norms
    head = pnn.AdaFaceHead(16, 20, m=0.4, h=0.333)
    loss = head(emb, labels)
    norms = emb.norm(dim=1)
    mean, std = norms.mean(), norms.std()  # first update copies the batch statistics
    z = (0.333 * (norms - mean) / (std + 1e-3)).clamp(-1, 1)
    cos = F.normalize(emb) @ F.normalize(head.weight.detach()).t()
    theta = torch.acos(cos[torch.arange(8), labels].clamp(-1 + 1e-7, 1 - 1e-7))
    target = torch.cos(theta - 0.4 * z) - (0.4 * z + 0.4)
    logits = cos.clone()
    logits[torch.arange(8), labels] = target
    torch.testing.assert_close(loss, F.cross_entropy(64 * logits, labels), rtol=1e-5, atol=1e-5)
    assert int(head.norm_stats.num_updates) == 1
    head.eval()
    head(emb, labels)
    assert int(head.norm_stats.num_updates) == 1


def test_partial_fc_in_one_process_equals_the_full_head():
    emb, labels = _batch(seed=2)
    pfc = pnn.PartialFC(16, 20, s=64.0, m2=0.5, label_smoothing=0.1)
    head = pnn.ArcFace(16, 20, label_smoothing=0.1)
    head.weight.data.copy_(pfc.weight.data)
    emb_a, emb_b = emb.clone().requires_grad_(), emb.clone().requires_grad_()
    loss_a, loss_b = pfc(emb_a, labels), head(emb_b, labels)
    torch.testing.assert_close(loss_a, loss_b)
    loss_a.backward()
    loss_b.backward()
    torch.testing.assert_close(emb_a.grad, emb_b.grad)
    torch.testing.assert_close(pfc.weight.grad, head.weight.grad)


def insightface_filtered_loss(embeddings, weight, labels, s, m2, threshold):
    """insightface's CombinedMarginLoss with interclass_filtering_threshold (ArcFace, exact gradient), dense:
    non-target cosines above the threshold multiplied by a detached 0, then the margin, s and cross-entropy."""
    cos = F.normalize(embeddings, dim=1) @ F.normalize(weight, dim=1).T
    rows = torch.nonzero(labels >= 0).squeeze(1)
    with torch.no_grad():
        dirty = (cos > threshold).to(cos.dtype)
        dirty[rows, labels[rows]] = 0.0
    cos = cos * (1 - dirty)
    target = torch.cos(torch.acos(cos[rows, labels[rows]]) + m2)
    logits = cos.index_put((rows, labels[rows]), target)
    return F.cross_entropy(s * logits, labels, ignore_index=-1)


def test_partial_fc_interclass_filtering_is_insightfaces():
    emb, labels = _batch(rows=8, classes=13, seed=5)
    labels[2] = -1
    emb = emb.double()
    pfc = pnn.PartialFC(16, 13, s=16.0, m2=0.5, interclass_filtering_threshold=0.2).double()
    emb_a, emb_b = emb.clone().requires_grad_(), emb.clone().requires_grad_()
    weight = pfc.weight.detach().clone().requires_grad_()
    loss = pfc(emb_a, labels)
    expected = insightface_filtered_loss(emb_b, weight, labels, 16.0, 0.5, 0.2)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(emb_a.grad, emb_b.grad)
    torch.testing.assert_close(pfc.weight.grad, weight.grad)
    # the threshold filters something here, and 0 turns filtering off
    assert not torch.allclose(loss, insightface_filtered_loss(emb, pfc.weight, labels, 16.0, 0.5, 1.0))
    pfc.interclass_filtering_threshold = 0.0
    torch.testing.assert_close(pfc(emb, labels), insightface_filtered_loss(emb, pfc.weight, labels, 16.0, 0.5, 1.0))


def test_partial_fc_sampling_keeps_every_positive_and_is_the_loss_over_the_kept_classes():
    torch.manual_seed(3)
    emb, labels = _batch(rows=6, classes=100, seed=3)
    pfc = pnn.PartialFC(16, 100, sample_rate=0.1)
    local = labels.clone()
    index = pfc.sample(local)
    assert index.numel() == 10 and torch.equal(index, index.sort().values)
    assert set(labels.tolist()) <= set(index.tolist())
    assert torch.equal(index[local], labels)  # labels now index the kept classes

    torch.manual_seed(4)
    loss = pfc(emb, labels)
    torch.manual_seed(4)
    kept = pfc.sample(labels.clone())
    expected = ops.margin_cross_entropy(emb, pfc.weight[kept], torch.searchsorted(kept, labels))
    torch.testing.assert_close(loss, expected)
    loss.backward()
    untouched = torch.ones(100, dtype=torch.bool)
    untouched[kept] = False
    assert pfc.weight.grad[untouched].abs().sum() == 0
    pfc.eval()  # evaluation uses every class
    torch.testing.assert_close(pfc(emb, labels), ops.margin_cross_entropy(emb, pfc.weight, labels))


def test_partial_fc_sampling_with_more_positives_than_the_rate_keeps_them_all():
    pfc = pnn.PartialFC(4, 10, sample_rate=0.2)
    labels = torch.tensor([1, 3, 5, 7, 3])
    index = pfc.sample(labels.clone())
    assert index.tolist() == [1, 3, 5, 7]


def test_partial_fc_state_dict_round_trip_and_mismatch():
    pfc = pnn.PartialFC(8, 30)
    state = pfc.state_dict()
    restored = pnn.PartialFC(8, 30)
    restored.load_state_dict(state)
    assert torch.equal(restored.weight, pfc.weight)
    with pytest.raises(ValueError, match="saved as"):
        pnn.PartialFC(8, 31).load_state_dict({**state, "weight": torch.zeros(31, 8)})


def test_head_bad_input():
    head = pnn.ArcFace(8, 10)
    with pytest.raises(ValueError, match="labels must be in"):
        head(torch.randn(2, 8), torch.tensor([0, 10]))
    with pytest.raises(ValueError, match=r"dim = 6 \(x's\), got \(10, 8\)"):
        head(torch.randn(2, 6), torch.tensor([0, 1]))
    pfc = pnn.PartialFC(8, 10)
    with pytest.raises(ValueError, match="labels must be in"):
        pfc(torch.randn(2, 8), torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="embeddings must have dim = 8"):
        pfc(torch.randn(2, 6), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="sample_rate"):
        pnn.PartialFC(8, 10, sample_rate=0.0)
    with pytest.raises(ValueError, match=r"interclass_filtering_threshold must be in \[0, 1\) \(0: off\), got 1.0"):
        pnn.PartialFC(8, 10, interclass_filtering_threshold=1.0)


def test_softmax_head_is_biased_linear_cross_entropy_ignoring_minus_one():
    # LFENet, Sec. IV-B: "we simply use the softmax function": no normalisation, scale or margin.
    emb, labels = _batch(rows=6, d=16, classes=20)
    labels[2] = -1
    head = pnn.SoftmaxHead(16, 20)
    assert head.weight.shape == (20, 16) and head.bias.shape == (20,)
    with torch.no_grad():
        head.bias.normal_()
    loss = head(emb, labels)
    keep = labels >= 0
    expected = F.cross_entropy(emb[keep] @ head.weight.t() + head.bias, labels[keep])
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert head.bias.grad.abs().sum() > 0 and head.weight.grad.abs().sum() > 0
    assert pnn.SoftmaxHead(16, 20, label_smoothing=0.1)(emb, labels) != pnn.SoftmaxHead(16, 20)(emb, labels)


def test_softmax_head_bad_input():
    head = pnn.SoftmaxHead(8, 10)
    with pytest.raises(ValueError, match=r"embeddings must be \(B, 8\) \(the head's dim\), got \(2, 6\)"):
        head(torch.randn(2, 6), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels must be in"):
        head(torch.randn(2, 8), torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="labels must have B = 2 entries"):
        head(torch.randn(2, 8), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="every label is -1"):
        head(torch.randn(2, 8), torch.tensor([-1, -1]))
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        pnn.SoftmaxHead(8, 10, label_smoothing=1.0)
