"""LGAF (Sec. 3): MHMS heads, LGF fusion and the ablation switches of Tab. 1, 3, 4."""
import io

import pytest
import torch
import torch.nn.functional as F

from pyfacex.backbones.iresnet import IResNet
from pyfacex.models import registry
from pyfacex.models.lgaf import LGAF, MHMS, LANet, LocalGlobalFusion, MSNet, gaussian_entropy, lgaf_r50, lgaf_r100
from pyfacex.nn import ArcFace, CosFace

E = 32  # embedding size of the tiny models


def tiny_backbone():
    return IResNet(layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), num_features=E, input_size=32)


def tiny(**overrides):
    torch.manual_seed(0)
    return LGAF(tiny_backbone(), **overrides)


@pytest.fixture
def images():
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def rows_with_norms(norms, d=E, seed=0):
    directions = F.normalize(torch.randn(len(norms), d, generator=torch.Generator().manual_seed(seed)), dim=1)
    return directions * torch.tensor(norms)[:, None]


def expected_gamma(local_norms, global_norms, h=0.333, eps=1e-3):
    # eq. 6 and 9 written out, with the first batch's (unbiased) statistics
    def quality(n):
        n = torch.tensor(n)
        return (h * (n - n.mean()) / (n.std() + eps)).clamp(-1, 1) + 1
    q_local, q_global = quality(local_norms), quality(global_norms)
    return torch.stack([q_local, q_global], 1) / (q_local + q_global)[:, None]


# ---------------------------------------------------------------- LGF (eq. 6-10)

def test_lgf_weights_follow_the_norms_and_sum_to_one():
    local_norms, global_norms = [1.0, 2.0, 3.0, 4.0], [4.0, 4.5, 3.0, 1.0]
    local, global_ = rows_with_norms(local_norms), rows_with_norms(global_norms, seed=1)
    kappa, gamma = LocalGlobalFusion()(local, global_)
    assert torch.allclose(gamma.sum(1), torch.ones(4))
    assert torch.allclose(gamma, expected_gamma(local_norms, global_norms), atol=1e-5)
    assert (gamma[1:, 0] > gamma[:-1, 0]).all()  # the local weight grows with the local norm
    assert torch.allclose(kappa, gamma[:, :1] * local + gamma[:, 1:] * global_, atol=1e-6)  # eq. 10


def test_lgf_statistics_are_an_ema_with_alpha_001_and_frozen_in_eval():
    lgf = LocalGlobalFusion()
    first, second = [1.0, 2.0, 3.0], [5.0, 7.0, 9.0]
    lgf(rows_with_norms(first), rows_with_norms(first, seed=1))
    lgf(rows_with_norms(second), rows_with_norms(second, seed=1))
    assert torch.isclose(lgf.local_stats.mean, torch.tensor(0.99 * 2.0 + 0.01 * 7.0))  # eq. 7
    assert torch.isclose(lgf.global_stats.std, torch.tensor(0.99 * 1.0 + 0.01 * 2.0))  # eq. 8
    lgf.eval()
    before = lgf.state_dict()["local_stats.mean"].clone()
    _, gamma = lgf(rows_with_norms([100.0, 0.1, 3.0]), rows_with_norms(first, seed=1))
    assert torch.equal(lgf.local_stats.mean, before)
    assert gamma[0, 0] > gamma[2, 0] > gamma[1, 0]


def test_lgf_gradients_go_through_kappa_only():
    local = rows_with_norms([1.0, 2.0, 3.0]).requires_grad_()
    global_ = rows_with_norms([3.0, 1.0, 2.0], seed=1).requires_grad_()
    kappa, gamma = LocalGlobalFusion()(local, global_)
    assert not gamma.requires_grad
    kappa.sum().backward()
    assert torch.allclose(local.grad, gamma[:, :1].expand_as(local))  # γ held constant (norms detached)
    assert torch.allclose(global_.grad, gamma[:, 1:].expand_as(global_))


def test_entropy_quality_reads_the_spread_not_the_norm():
    torch.manual_seed(0)
    u = torch.randn(E)
    shifted = u + torch.tensor([0.0, 3.0, 6.0, 9.0])[:, None]  # one std, four norms
    same = u.expand(4, E).clone()
    _, energy = LocalGlobalFusion("energy")(shifted, same)
    _, entropy = LocalGlobalFusion("entropy")(shifted, same)
    assert energy[:, 0].std() > 0.05
    assert torch.allclose(entropy, torch.full((4, 2), 0.5), atol=1e-4)  # float rounding of equal stds
    scaled = u * torch.tensor([1.0, 2.0, 3.0, 4.0])[:, None]  # spread grows: more entropy
    _, entropy = LocalGlobalFusion("entropy")(scaled, same)
    assert (entropy[1:, 0] > entropy[:-1, 0]).all() and torch.allclose(entropy.sum(1), torch.ones(4))
    assert torch.allclose(gaussian_entropy(u[None] * 2) - gaussian_entropy(u[None]), torch.tensor(2.0).log())


def test_lgf_rejects_unknown_switches():
    with pytest.raises(ValueError, match="quality must be one of"):
        LocalGlobalFusion(quality="norm")
    with pytest.raises(ValueError, match="fusion must be one of"):
        LocalGlobalFusion(fusion="max")
    with pytest.raises(ValueError, match='fusion="iaff" needs channels'):
        LocalGlobalFusion(fusion="iaff")
    with pytest.raises(ValueError, match="reduction must be a positive int, got 0"):
        LocalGlobalFusion(fusion="iaff", channels=E, iaff_reduction=0)
    with pytest.raises(ValueError, match=r"x and y must be \(B, C\) of one shape"):
        LocalGlobalFusion("none", fusion="iaff", channels=E)(torch.ones(2, E), torch.ones(2, E + 1))
    with pytest.raises(ValueError, match="no fusion weights"):
        LocalGlobalFusion("none").weights(torch.ones(2, 3), torch.ones(2, 3))


# ---------------------------------------------------------------- MHMS (eq. 11-14)

def test_lanet_is_a_spatial_map_shared_by_the_channels():
    torch.manual_seed(0)
    lanet, x = LANet(16, reduction=4), torch.randn(2, 16, 5, 5)
    ratio = lanet(x) / x
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-5)
    attention = lanet.attention(x)
    assert attention.shape == (2, 1, 5, 5) and ((attention > 0) & (attention < 1)).all() and attention.std() > 0


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_scale_j_has_the_equivalent_kernel_2j_plus_1(depth):
    torch.manual_seed(0)
    net = MSNet(8, (9, 9), 4, scales=(depth,), branch_channels=4).eval()  # eval: BN per position
    x = torch.randn(1, 8, 9, 9, requires_grad=True)
    net.scales[0](x)[0, :, 4, 4].sum().backward()
    support = x.grad[0].abs().sum(0) > 0
    window = torch.zeros(9, 9, dtype=torch.bool)
    window[4 - depth:5 + depth, 4 - depth:5 + depth] = True
    assert torch.equal(support, window)


def test_mhms_concatenates_its_heads_each_projecting_to_e_over_b():
    torch.manual_seed(0)
    mhms = MHMS(16, (2, 2), 32, heads=4, scales=(1, 2), branch_channels=6).eval()
    x = torch.randn(3, 16, 2, 2)
    out = mhms(x)
    assert out.shape == (3, 32)
    for k, head in enumerate(mhms.heads):
        assert torch.equal(out[:, 8 * k:8 * (k + 1)], head(x))  # eq. 14
        assert head.se.fc1.in_channels == 2 * 6  # SE over the concatenated scales (eq. 13)
    with pytest.raises(ValueError, match="divisible by heads"):
        MHMS(16, (2, 2), 30, heads=4)
    with pytest.raises(ValueError, match="scales must be"):
        MSNet(16, (2, 2), 8, scales=(1, 0))


# ---------------------------------------------------------------- the model and its ablations (Tab. 1, 3, 4)

def test_lgaf_forward_backward_shapes(images):
    model = tiny(num_classes=5)
    labels = torch.tensor([0, 1, 2, 3])
    out = model(images, labels, return_details=True)
    assert out.embedding.shape == out.local.shape == out.global_.shape == (4, E)
    assert torch.allclose(out.gamma.sum(1), torch.ones(4))
    assert torch.allclose(out.embedding, out.gamma[:, :1] * out.local + out.gamma[:, 1:] * out.global_, atol=1e-6)
    out.loss.backward()
    for name in ("backbone.conv1.weight", "backbone.fc.weight", "mhms.heads.3.lanets.2.conv1.weight", "head.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name
    loss, kappa = model(images, labels)
    assert loss.dim() == 0 and kappa.shape == (4, E)
    assert model(images).shape == (4, E)


def test_gfe_only_is_the_plain_backbone(images):
    model = tiny(branches="gfe_only").eval()
    assert model.mhms is None and model.lgf is None
    assert torch.equal(model(images), model.backbone(images))  # Method II = ArcFace's embedding


def test_mhms_only_ignores_the_global_head(images):
    model = tiny(branches="mhms_only").eval()
    kappa = model(images)
    assert model.lgf is None
    assert torch.equal(kappa, model.mhms(model.backbone(images, return_feature_map=True)))
    with torch.no_grad():
        model.backbone.fc.weight.zero_()
    assert torch.equal(model(images), kappa)


def test_without_lgf_kappa_is_the_normalised_sum(images):
    model = tiny(quality="none")
    out = model(images, return_details=True)
    assert out.gamma is None and not any("stats" in key for key in model.state_dict())
    assert torch.allclose(F.normalize(out.embedding), F.normalize(out.local + out.global_), atol=1e-6)  # Method III
    assert not torch.allclose(F.normalize(tiny()(images)), F.normalize(out.embedding), atol=1e-3)


def test_cat_fusion_concatenates_the_weighted_features(images):
    model = tiny(fusion="cat", num_classes=3)
    out = model(images, torch.tensor([0, 1, 2, 0]), return_details=True)
    assert model.embedding_size == 2 * E and model.head.weight.shape == (3, 2 * E)
    assert torch.allclose(out.embedding, torch.cat([out.gamma[:, :1] * out.local, out.gamma[:, 1:] * out.global_], 1))


def _saturate(attention, sign):
    """Drive an MS-CAM's output to 1 (sign +1) or 0 (−1) through the bias of its last BatchNorms."""
    with torch.no_grad():
        for branch in (attention.local, attention.global_):
            branch[-1].bias.fill_(sign * 50.0)


def test_iaff_fusion_selects_between_the_weighted_features():
    local, global_ = rows_with_norms([1.0, 2.0, 3.0, 4.0]), rows_with_norms([4.0, 4.5, 3.0, 1.0], seed=1)
    torch.manual_seed(0)
    lgf = LocalGlobalFusion(fusion="iaff", channels=E)
    kappa, gamma = lgf(local, global_)
    assert kappa.shape == (4, E) and torch.allclose(gamma, expected_gamma([1.0, 2.0, 3.0, 4.0], [4.0, 4.5, 3.0, 1.0]),
                                                    atol=1e-5)
    x, y = gamma[:, :1] * local, gamma[:, 1:] * global_  # LGF's quality weights stay (Tab. 4 reading)
    lo, hi = torch.minimum(x, y), torch.maximum(x, y)
    assert bool(((kappa >= lo - 1e-6) & (kappa <= hi + 1e-6)).all())  # a per-channel soft selection
    assert not torch.allclose(kappa, x + y, atol=1e-3)  # not ADD
    lgf.eval()  # the statistics stay: the same γ, and only M₂ decides the output
    _saturate(lgf.iaff.attention2, +1.0)
    torch.testing.assert_close(lgf(local, global_)[0], x)  # M₂ = 1: Z = X
    _saturate(lgf.iaff.attention2, -1.0)
    torch.testing.assert_close(lgf(local, global_)[0], y)  # M₂ = 0: Z = Y


def test_iaff_first_stage_feeds_the_second():
    # Z = M₂(X ⊎ Y)·X + (1 − M₂(X ⊎ Y))·Y with X ⊎ Y = M₁(X + Y)·X + (1 − M₁(X + Y))·Y, by hand.
    torch.manual_seed(0)
    lgf = LocalGlobalFusion(quality="none", fusion="iaff", channels=E, iaff_reduction=8).eval()
    x, y = torch.randn(5, E), torch.randn(5, E)
    iaff = lgf.iaff
    m1 = torch.sigmoid(iaff.attention1.local(x + y) + iaff.attention1.global_(x + y))
    initial = m1 * x + (1 - m1) * y
    m2 = torch.sigmoid(iaff.attention2.local(initial) + iaff.attention2.global_(initial))
    kappa, gamma = lgf(x, y)
    assert gamma is None and iaff.attention1.local[0].out_features == E // 8
    torch.testing.assert_close(kappa, m2 * x + (1 - m2) * y)


def test_iaff_lgaf_trains_the_fusion(images):
    model = tiny(fusion="iaff", num_classes=3)
    out = model(images, torch.tensor([0, 1, 2, 0]), return_details=True)
    assert model.embedding_size == E and out.embedding.shape == (4, E) and model.head.weight.shape == (3, E)
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.lgf.iaff.parameters())
    assert model.mhms.heads[0].project[2].weight.grad.abs().sum() > 0  # the local branch learns through iAFF
    assert model.backbone.fc.weight.grad.abs().sum() > 0  # and the global one


def test_quality_switch_changes_the_weights(images):
    energy = tiny()(images, return_details=True).gamma
    entropy = tiny(quality="entropy")(images, return_details=True).gamma
    assert torch.allclose(entropy.sum(1), torch.ones(4)) and not torch.allclose(energy, entropy, atol=1e-3)


def test_losses_and_margins():
    assert isinstance(tiny(num_classes=4).head, ArcFace) and tiny(num_classes=4).head.m2 == 0.5
    cosface = tiny(num_classes=4, loss="cosface").head
    assert isinstance(cosface, CosFace) and cosface.m3 == 0.4 and cosface.s == 64.0
    assert tiny(num_classes=4, loss="cosface", margin=0.35).head.m3 == 0.35
    assert tiny().head is None


def test_a_few_sgd_steps_lower_the_loss(images):
    model = tiny(num_classes=4)
    labels = torch.tensor([0, 1, 2, 3])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(6):
        loss, _ = model(images, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_strict_state_dict_round_trip(images):
    model = tiny(num_classes=4)
    model(images)  # moves the norm statistics and BN buffers
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    clone = LGAF(tiny_backbone(), num_classes=4)
    clone.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    assert torch.equal(clone.eval()(images), model.eval()(images))
    assert all(key in model.state_dict() for key in ("backbone.layer4.0.conv2.weight", "backbone.features.weight"))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="branches must be one of"):
        tiny(branches="local")
    with pytest.raises(ValueError, match="loss must be one of"):
        tiny(num_classes=2, loss="sphereface")
    with pytest.raises(ValueError, match="either head or num_classes"):
        tiny(num_classes=2, head=ArcFace(E, 2))
    with pytest.raises(ValueError, match="backbone_kwargs apply to a named backbone"):
        LGAF(tiny_backbone(), backbone_kwargs={"dropout": 0.1})
    with pytest.raises(ValueError, match="backbone must be a module or one of"):
        LGAF("resnet100")
    with pytest.raises(TypeError, match="iResNet-like"):
        LGAF(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="no head"):
        tiny()(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels must be a \(2,\) tensor"):
        tiny(num_classes=2)(torch.randn(2, 3, 32, 32), torch.tensor([0, 1, 1]))


def test_entry_points_are_registered_and_build_small(images):
    assert registry._MODELS["lgaf_r50"] is lgaf_r50 and registry._MODELS["lgaf_r100"] is lgaf_r100
    assert "eq." in lgaf_r50.__doc__ and "eq." in lgaf_r100.__doc__
    small = dict(layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), num_features=E, input_size=32)
    model = lgaf_r100(backbone_kwargs=small, num_classes=3, loss="cosface", heads=2)
    assert model.backbone.layers == (1, 1, 1, 1) and len(model.mhms.heads) == 2
    assert model(images).shape == (4, E)
    assert lgaf_r50(backbone=tiny_backbone(), branches="gfe_only").mhms is None
