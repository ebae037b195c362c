"""QAFace and VPL: momentum EMA, memory writes, injection window, VPL mix, training, state."""
from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from pyfacex.models import registry
from pyfacex.models.qaface import MemoryInjectionHead, QAFace, qaface_r50, qaface_r100, vpl_r100
from pyfacex.ops import available_backends, margin_cross_entropy, use_backend
from ranks import spawn_ranks

D, C = 16, 6


class TinyBackbone(nn.Module):
    """(B, 3, 32, 32) → (B, D), with BatchNorm buffers and dropout like an iResNet."""

    num_features = D

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(8 * 8 * 8, D)

    def forward(self, x):
        return self.fc(self.dropout(torch.relu(self.bn(self.conv(x))).flatten(1)))


@pytest.fixture(params=["reference", "native"])
def backend(request):
    """Runs a test on each backend of the memory ops (the injection's autograd differs between them)."""
    if request.param not in available_backends():
        pytest.skip(f"backend {request.param} is not available")
    with use_backend(request.param):
        yield request.param


def make_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    kwargs = {"start_iteration": 0, "delta_t": 100, **kwargs}
    return QAFace(TinyBackbone(), C, **kwargs)


def batch(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.arange(n) % C


def perturb(module):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p))


def qaface_f(features, tau=2.0):
    """eq. 10-11 by hand for a first batch (the statistics are the batch's own)."""
    norms = features.norm(dim=1)
    z = (norms - norms.mean()) / (norms.std() + 1e-3)
    return torch.where(z >= -tau, torch.exp(-z), torch.zeros_like(z))


def test_momentum_update_is_the_parameter_ema_and_copies_buffers():
    model = make_model()
    model.backbone.train()(batch(8)[0])  # moves the online BatchNorm running statistics
    perturb(model.backbone)
    slow = [p.clone() for p in model.momentum_backbone.parameters()]
    model.momentum_update()
    for old, new, fast in zip(slow, model.momentum_backbone.parameters(), model.backbone.parameters()):
        torch.testing.assert_close(new, 0.99 * old + 0.01 * fast)
        assert not new.requires_grad
    torch.testing.assert_close(model.momentum_backbone.bn.running_mean, model.backbone.bn.running_mean)


def test_memory_holds_the_momentum_features_of_the_batch_classes_only():
    model = make_model().train()
    perturb(model.backbone)  # online and momentum backbones now differ
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([3, 0, 5, 1])
    out = model(images, labels, 7, return_details=True)
    out.loss.backward()

    with torch.no_grad():
        momentum = model.momentum_backbone(images)  # eval mode: the features the model memorised
        online = model.backbone.eval()(images)
    f = qaface_f(momentum)
    torch.testing.assert_close(out.quality, f)
    torch.testing.assert_close(model.head.memory[labels], f[:, None] * F.normalize(momentum))  # eq. 7
    assert not torch.allclose(model.head.memory[labels], qaface_f(online)[:, None] * F.normalize(online))
    others = torch.tensor([2, 4])
    assert torch.equal(model.head.memory[others], torch.zeros(2, D))
    assert model.head.stamps.tolist() == [7, 7, -1, 7, -1, 7]
    assert all(p.grad is None for p in model.momentum_backbone.parameters())
    assert model.head.weight.grad is not None and model.backbone.fc.weight.grad is not None


def test_several_samples_of_one_class_keep_the_last():
    model = make_model().train()
    images = torch.randn(3, 3, 32, 32)
    model(images, torch.tensor([2, 2, 1]), 0)
    with torch.no_grad():
        momentum = model.momentum_backbone(images)
    f = qaface_f(momentum)
    torch.testing.assert_close(model.head.memory[2], f[1] * F.normalize(momentum[1], dim=0))


def test_quality_weight_drops_unrecognisable_samples():
    model = make_model(tau=0.5).train()
    images = torch.randn(4, 3, 32, 32)
    images[0] *= 0.01  # a near-blank image: by far the smallest norm, ẑ < −τ
    out = model(images, torch.arange(4), 0, return_details=True)
    assert out.quality[0] == 0 and bool((out.quality[1:] > 0).all())
    # f = 0 "would not affect the centers" (Sec. 3.4): no memory, and no stamp either
    assert torch.equal(model.head.memory[0], torch.zeros(D)) and model.head.stamps.tolist()[:4] == [-1, 0, 0, 0]


def test_without_quality_weight_every_sample_writes_its_unweighted_momentum_feature():
    """f ≡ 1 (``quality_weight=False``), the ablation of eq. 11: the blank image f(ẑ) = 0 drops writes too."""
    model = make_model(tau=0.5, quality_weight=False).train()
    images = torch.randn(4, 3, 32, 32)
    images[0] *= 0.01
    labels = torch.arange(4)
    out = model(images, labels, 0, return_details=True)
    with torch.no_grad():
        momentum = model.momentum_backbone(images)  # eval mode: the features the model memorised
    assert out.quality is None and model.head.norm_stats is None
    torch.testing.assert_close(model.head.memory[labels], F.normalize(momentum))  # eq. 7 with f = 1
    assert model.head.stamps.tolist()[:4] == [0, 0, 0, 0]

    # the injection is eq. 12's W + M as in QAFace: the next step's target centre carries the memory
    out = model(images, labels, 1, return_details=True)
    assert bool(out.active[:4].all())
    centre = F.normalize(model.head.weight[1] + model.head.memory[1], dim=0)
    torch.testing.assert_close(out.target_cos[1], (F.normalize(out.embeddings[1], dim=0) @ centre).clamp(-1, 1),
                               atol=1e-5, rtol=1e-5)
    assert "quality_weight=False" in repr(model.head)


def test_unrecognisable_sample_keeps_what_a_recognisable_one_memorised():
    model = make_model(tau=0.5).train()
    images = torch.randn(4, 3, 32, 32)
    first = model(images, torch.arange(4), 0, return_details=True)
    assert first.quality[1] > 0 and model.head.stamps[1] == 0  # class 1 memorised at iteration 0
    kept = model.head.memory[1].clone()
    blank = images.clone()
    blank[1] *= 0.01  # class 1 comes back unrecognisable (f = 0): its memory and stamp must stay
    out = model(blank, torch.arange(4), 5, return_details=True)
    assert out.quality[1] == 0
    torch.testing.assert_close(model.head.memory[1], kept)
    assert model.head.stamps[1] == 0
    # in one batch, an f = 0 duplicate after a recognisable sample of its class changes nothing either
    out = model(torch.cat([images[2:3], blank[1:2] * 0.01]), torch.tensor([2, 2]), 6, return_details=True)
    assert out.quality[0] > 0 and out.quality[1] == 0
    with torch.no_grad():
        momentum = model.momentum_backbone(images[2:3])[0]
    torch.testing.assert_close(model.head.memory[2], out.quality[0] * F.normalize(momentum, dim=0))
    assert model.head.stamps[2] == 6


@pytest.mark.parametrize("normalize_weight, invariant", [(True, True), (False, False)])
def test_normalize_weight_makes_the_injection_independent_of_the_centres_scale(normalize_weight, invariant, backend):
    torch.manual_seed(0)
    head = MemoryInjectionHead(D, C, start_iteration=0, delta_t=5, s=8.0, normalize_weight=normalize_weight)
    with torch.no_grad():
        head.memory.copy_(0.5 * F.normalize(torch.randn(C, D)))
        head.stamps.fill_(0)
    embeddings, labels = torch.randn(8, D), torch.arange(8) % C
    loss = head(embeddings, labels, 1)
    expected = F.normalize(head.weight) + head.memory if normalize_weight else head.weight + head.memory
    torch.testing.assert_close(loss, margin_cross_entropy(embeddings, expected, labels, s=8.0))
    with torch.no_grad():
        head.weight.mul_(10.0)  # what initialisation or weight decay change: the scale of W
    scaled = head(embeddings, labels, 1)
    assert torch.allclose(scaled, loss) == invariant


def test_writes_only_in_training_within_delta_t_of_the_start():
    model = make_model(start_iteration=100, delta_t=10).train()
    calls = []
    model.momentum_backbone.register_forward_hook(lambda *args: calls.append(1))
    images, labels = batch()
    model(images, labels, 89)  # its write would be stale (> Δt) at the start: skipped, no momentum forward
    assert calls == [] and bool((model.head.stamps == -1).all())
    model.eval()(images, labels, 95)
    assert calls == [] and bool((model.head.stamps == -1).all())
    model.train()(images, labels, 90)
    assert calls == [1] and model.head.stamps[labels].tolist() == [90] * 4
    assert not model.momentum_backbone.training  # train() keeps the momentum copy in eval mode


@pytest.mark.parametrize("mode", ["qaface", "vpl"])
def test_injection_only_for_classes_within_delta_t_after_the_start(mode, backend):
    torch.manual_seed(0)
    head = MemoryInjectionHead(D, C, mode=mode, start_iteration=10, delta_t=5, s=8.0)
    with torch.no_grad():
        head.memory.copy_(F.normalize(torch.randn(C, D)))
        head.stamps.copy_(torch.tensor([-1, 5, 4, 10, 7, 0]))
    embeddings, labels = torch.randn(8, D), torch.arange(8) % C

    before = head(embeddings, labels, 9, return_details=True)  # before the start: plain ArcFace
    assert before.active is None
    torch.testing.assert_close(before.loss, margin_cross_entropy(embeddings, head.weight, labels, s=8.0))

    out = head(embeddings, labels, 10, return_details=True)
    assert out.active.tolist() == [False, True, False, True, True, False]  # 10 − stamp <= 5, never-written off
    w, m = head.weight, head.memory
    if mode == "qaface":
        mixed = w + m  # eq. 12
    else:
        mixed = F.normalize((1 - 0.15) * F.normalize(w) + 0.15 * m)  # VPL
    expected = margin_cross_entropy(embeddings, torch.where(out.active[:, None], mixed, w), labels, s=8.0)
    torch.testing.assert_close(out.loss, expected)
    grad, expected_grad = (torch.autograd.grad(loss, w)[0] for loss in (out.loss, expected))
    torch.testing.assert_close(grad, expected_grad)
    assert not torch.allclose(out.loss, before.loss)


def test_vpl_memorises_normalised_online_features_without_momentum_copy():
    torch.manual_seed(0)
    model = vpl_r100(num_classes=C, backbone=TinyBackbone(), embedding_size=D, start_iteration=0).train()
    assert model.momentum_backbone is None and model.head.norm_stats is None
    assert (model.head.mode, model.head.lam, model.head.delta_t) == ("vpl", 0.15, 200)
    assert not any(k.startswith("momentum_backbone") for k in model.state_dict())
    images, labels = batch(seed=3)
    out = model(images, labels, 3, return_details=True)
    assert out.quality is None
    torch.testing.assert_close(model.head.memory[labels], F.normalize(out.embeddings.detach()))


@pytest.mark.parametrize("mode", ["qaface", "vpl"])
def test_a_few_steps_lower_the_loss(mode):
    model = make_model(mode=mode, delta_t=3, s=16.0, m2=0.2).train()
    images, labels = batch(8, seed=5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for iteration in range(10):
        out = model(images, labels, iteration, return_details=True)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        model.momentum_update()
        losses.append(out.loss.item())
    assert out.active.sum() == C  # the memory was injected while training
    assert losses[-1] < 0.5 * losses[0], losses


def test_state_dict_round_trip_restores_memory_stamps_and_statistics():
    model = make_model().train()
    images, labels = batch(seed=7)
    for iteration in range(2):
        model(images, labels, iteration).backward()
        model.momentum_update()
    state = model.state_dict()
    assert {"head.memory", "head.stamps", "head.norm_stats.mean", "head.norm_stats.std",
            "momentum_backbone.fc.weight"} <= set(state)

    restored = make_model(seed=1)
    restored.load_state_dict(state, strict=True)
    assert torch.equal(restored.head.memory, model.head.memory)
    assert torch.equal(restored.head.stamps, model.head.stamps) and model.head.stamps.max() == 1
    assert torch.equal(restored.head.norm_stats.mean, model.head.norm_stats.mean)
    assert torch.equal(restored.momentum_backbone.fc.weight, model.momentum_backbone.fc.weight)
    model.eval(), restored.eval()
    torch.testing.assert_close(restored(images, labels, 2), model(images, labels, 2))


def _rank_work(rank, images, labels, split, out):
    model = make_model().train()
    part = slice(0, split) if rank == 0 else slice(split, None)
    model(images[part], labels[part], 4)
    out[rank] = (model.head.memory.clone(), model.head.stamps.clone())


def test_two_ranks_write_the_memory_of_one_process_on_the_global_batch():
    images, labels = batch(8, seed=11)
    labels = torch.tensor([0, 1, 2, 1, 3, 0, 4, 2])  # classes repeated across ranks: the later rank's sample wins
    single = make_model().train()
    single(images, labels, 4)
    with mp.Manager() as manager:
        out = manager.dict()
        spawn_ranks(_rank_work, images, labels, 3, out, init_group=True)
        results = dict(out)
    for rank in (0, 1):
        memory, stamps = results[rank]
        torch.testing.assert_close(memory, single.head.memory)
        assert torch.equal(stamps, single.head.stamps), rank


def test_entry_points_are_registered_with_the_papers_settings():
    for name in ("qaface_r50", "qaface_r100", "vpl_r100"):
        assert name in registry._MODELS, name
    for entry in (qaface_r50, qaface_r100):
        model = entry(num_classes=C, backbone=TinyBackbone(), embedding_size=D)
        head = model.head
        assert (head.mode, head.start_iteration, head.delta_t, head.tau, model.momentum) == (
            "qaface", 16540, 1000, 2.0, 0.99)
        assert (head.s, head.m2) == (64.0, 0.5)
    vpl = vpl_r100(num_classes=C, backbone=TinyBackbone(), embedding_size=D)
    assert vpl.head.start_iteration == 8000


def test_default_iresnet_built_tiny_by_the_entry_point():
    pytest.importorskip("pyfacex.backbones.iresnet")
    torch.manual_seed(0)
    model = qaface_r100(num_classes=C, embedding_size=32, layers=(1, 1, 1, 1), widths=(8, 16, 32, 64),
                        input_size=32, start_iteration=0).train()
    assert model.backbone.layers == (1, 1, 1, 1) and model.head.weight.shape == (C, 32)
    images, labels = batch(seed=9)
    model(images, labels, 0).backward()
    model.momentum_update()
    out = model(images, labels, 1, return_details=True)
    assert out.active[labels].all() and model.head.stamps[labels].tolist() == [1] * 4
    assert model.backbone.conv1.weight.grad is not None


def test_bad_input():
    with pytest.raises(ValueError, match="mode must be one of"):
        make_model(mode="magface")
    with pytest.raises(ValueError, match="momentum must be in"):
        make_model(momentum=1.0)
    with pytest.raises(ValueError, match="embedding_size must be given"):
        QAFace(nn.Flatten(), C)
    with pytest.raises(TypeError, match="backbone must be an nn.Module"):
        QAFace(lambda x: x, C, embedding_size=D)
    with pytest.raises(ValueError, match="delta_t must be an int >= 0"):
        make_model(delta_t=-1)
    with pytest.raises(ValueError, match="lam must be in"):
        make_model(mode="vpl", lam=1.5)
    with pytest.raises(ValueError, match="normalize_weight applies to mode='qaface'"):
        make_model(mode="vpl", normalize_weight=True)
    with pytest.raises(TypeError, match="normalize_weight must be a bool"):
        make_model(normalize_weight="yes")
    with pytest.raises(TypeError, match="quality_weight must be a bool"):
        make_model(quality_weight=0)
    with pytest.raises(ValueError, match="quality_weight=False applies to mode='qaface'"):
        make_model(mode="vpl", quality_weight=False)
    with pytest.raises(ValueError, match="iteration must be an int >= 0"):
        make_model()(*batch(), -1)
    with pytest.raises(ValueError, match="configure the default iResNet"):
        qaface_r50(num_classes=C, backbone=TinyBackbone(), embedding_size=D, layers=(1, 1, 1, 1))
    with pytest.raises(TypeError, match="num_classes"):
        qaface_r100(backbone=TinyBackbone())
