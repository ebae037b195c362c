"""The Face Aggregation Network system: frozen extractor, the four losses (Face Aggregation Network Sec. 3.2)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pyfacex.backbones.aggregator import Discriminator, FaceAggregator
from pyfacex.models import registry
from pyfacex.models.face_aggregation import FaceAggregation, discriminative_loss, faceagg_unet, total_variation

SIZE, DIM = 32, 8


def tiny_extractor():
    # BatchNorm makes "the extractor stays in eval mode" observable through its running statistics.
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, DIM))


def tiny_system(**options):
    torch.manual_seed(0)
    options = {"num_classes": 4, "embedding_size": DIM, **options}
    return FaceAggregation(FaceAggregator((4, 4, 8, 8, 8)), Discriminator((4, 4, 8, 8), SIZE), tiny_extractor(),
                           **options)


def toy_batch(sizes=(2, 3), seed=1):
    g = torch.Generator().manual_seed(seed)
    b = len(sizes)
    images = torch.randn(sum(sizes), 3, SIZE, SIZE, generator=g)
    offsets = torch.tensor([0, *sizes]).cumsum(0)
    positives, negatives = torch.randn(2, b, 3, SIZE, SIZE, generator=g)
    return images, offsets, positives, negatives, torch.arange(b)


def test_discriminative_loss_against_eq_6_7_by_hand():
    # Set 0: inputs at distances² 1 and 4 from P, so α = 1 (the min, not the mean 2.5).
    f_a = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    f_p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    f_n = torch.tensor([[3.0, 1.0], [0.0, 3.0]])
    f_i = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0]])
    offsets = torch.tensor([0, 2, 3])
    loss = discriminative_loss(f_a, f_p, f_n, f_i, offsets, beta=2.0)
    # set 0: (4 - 1)_+ + (2 - 1)_+ = 4; set 1: α = 0, (1 - 0)_+ + (2 - 9)_+ = 1
    torch.testing.assert_close(loss, torch.tensor([4.0, 1.0]))
    normalized = discriminative_loss(f_a, f_p, f_n, f_i + torch.tensor([1e-3, 0.0]), offsets, beta=2.0, normalize=True)
    # set 0 normalised: A = P = (1, 0) so the first term is 0; ‖A − N̂‖² = 2 − 2·3/√10
    expected = 2.0 - (2.0 - 2.0 * 3.0 / 10 ** 0.5)
    torch.testing.assert_close(normalized[0], torch.tensor(expected))


def test_total_variation_is_eq_13():
    images = torch.randn(2, 3, 5, 4)
    expected = torch.zeros(2)
    for b in range(2):
        for c in range(3):
            a = images[b, c]
            for x in range(5):
                for y in range(4):
                    if y + 1 < 4:
                        expected[b] += (a[x, y] - a[x, y + 1]) ** 2
                    if x + 1 < 5:
                        expected[b] += (a[x, y] - a[x + 1, y]) ** 2
    torch.testing.assert_close(total_variation(images), expected)


@pytest.mark.parametrize("reconstruction", ["average", "center"])
@pytest.mark.parametrize("normalize", [False, True])
def test_generator_loss_terms_against_direct_formulas(reconstruction, normalize):
    model = tiny_system(reconstruction=reconstruction, normalize_features=normalize, beta=50.0,
                        lambda_dis=0.7, lambda_rec=0.3, lambda_adv=1.3, lambda_tv=1e-3).train()
    images, offsets, positives, negatives, labels = toy_batch()
    out = model.generator_loss(images, offsets, positives, negatives, labels)

    ext, disc = model.extractor, model.discriminator
    with torch.no_grad():
        a = model.aggregate(images, offsets)
        torch.testing.assert_close(out.aggregated, a)
        dis, rec, adv, tv = [], [], [], []
        for s in range(2):
            members = images[offsets[s]:offsets[s + 1]]
            f_a, f_p, f_n = ext(a[s:s + 1])[0], ext(positives[s:s + 1])[0], ext(negatives[s:s + 1])[0]
            f_i = ext(members)
            raw_mean = f_i.mean(0)
            if normalize:
                f_a, f_p, f_n, f_i = (F.normalize(f, dim=-1) for f in (f_a, f_p, f_n, f_i))
            alpha = min(((f - f_p) ** 2).sum() for f in f_i)
            dis.append(torch.relu(((f_a - f_p) ** 2).sum() - alpha) + torch.relu(50.0 - ((f_a - f_n) ** 2).sum()))
            # First visit of each identity: the centre is the mean of f_P and the f_In (eq. 10's mean).
            ext_p = ext(positives[s:s + 1])[0]
            target = raw_mean if reconstruction == "average" else (ext_p + ext(members).sum(0)) / (len(members) + 1)
            rec.append(((ext(a[s:s + 1])[0] - target) ** 2).sum())
            adv.append(-torch.log(torch.sigmoid(disc(a[s:s + 1])[0])))
            tv.append(((a[s, :, :, 1:] - a[s, :, :, :-1]) ** 2).sum() + ((a[s, :, 1:] - a[s, :, :-1]) ** 2).sum())
    expected = {name: torch.stack(v).mean() for name, v in (("dis", dis), ("rec", rec), ("adv", adv), ("tv", tv))}
    for name, value in expected.items():
        torch.testing.assert_close(getattr(out, name), value, rtol=1e-4, atol=1e-5, msg=name)
    assert out.dis > 0 and out.rec > 0
    total = 0.7 * expected["dis"] + 0.3 * expected["rec"] + 1.3 * expected["adv"] + 1e-3 * expected["tv"]
    torch.testing.assert_close(out.loss, total, rtol=1e-4, atol=1e-5)


def test_centres_follow_eq_10_with_the_corrected_sign():
    model = tiny_system(center_rate=0.5).train()
    images, offsets, positives, negatives, _ = toy_batch((2, 3))
    labels = torch.tensor([1, 1])  # two sets of one identity: updated in batch order

    def set_mean(s, pos, imgs):
        with torch.no_grad():
            return (model.extractor(pos[s:s + 1])[0] + model.extractor(imgs[offsets[s]:offsets[s + 1]]).sum(0)) \
                / (offsets[s + 1] - offsets[s] + 1)

    model.generator_loss(images, offsets, positives, negatives, labels)
    m0, m1 = set_mean(0, positives, images), set_mean(1, positives, images)
    expected = 0.5 * m0 + 0.5 * m1  # first visit sets m0, then c <- (1 - r) c + r m1
    torch.testing.assert_close(model.centers[1], expected)
    assert model.center_seen.tolist() == [False, True, False, False]
    assert (model.centers[[0, 2, 3]] == 0).all()

    images2 = images.flip(0)
    model.generator_loss(images2, offsets, positives, negatives, torch.tensor([1, 3]))
    torch.testing.assert_close(model.centers[1], 0.5 * expected + 0.5 * set_mean(0, positives, images2))

    before = model.centers.clone()
    model.eval().generator_loss(images, offsets, positives, negatives, labels)
    assert torch.equal(model.centers, before)  # no update outside training (update_centers=None)


def test_the_extractor_is_frozen_and_stays_in_eval_mode():
    model = tiny_system(reconstruction="average").train()
    assert not model.extractor.training
    stats = model.extractor[1].running_mean.clone()
    images, offsets, positives, negatives, _ = toy_batch()
    out = model.generator_loss(images, offsets, positives, negatives)
    out.loss.backward()
    assert all(p.grad is None for p in model.extractor.parameters())
    assert torch.equal(model.extractor[1].running_mean, stats)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.aggregator.parameters())


def test_discriminator_loss_is_eq_12_and_trains_the_discriminator_only():
    model = tiny_system(reconstruction="average")
    images, offsets, positives, negatives, _ = toy_batch()
    aggregated = model.aggregate(images, offsets)
    out = model.discriminator_loss(aggregated, positives)
    d_a, d_p = torch.sigmoid(model.discriminator(aggregated)), torch.sigmoid(model.discriminator(positives))
    torch.testing.assert_close(out.fake, -torch.log(1 - d_a).mean())
    torch.testing.assert_close(out.real, -torch.log(d_p).mean())
    torch.testing.assert_close(out.loss, out.fake + out.real)
    out.loss.backward()
    assert all(p.grad is None for p in model.aggregator.parameters())
    assert all(p.grad is not None for p in model.discriminator.parameters())


def test_adam_steps_lower_the_generator_loss():
    model = tiny_system().train()
    batch = toy_batch()
    optimizer = torch.optim.Adam(model.aggregator.parameters(), lr=5e-3)
    losses, reconstruction = [], []
    for _ in range(8):
        optimizer.zero_grad()
        out = model.generator_loss(*batch)
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
        reconstruction.append(out.rec.item())
    # The tiny extractor's features are small, so the β = 32 hinge of L_dis stays nearly saturated;
    # the loss still goes down at every step and L_rec (the part it can move fast) more than halves.
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert reconstruction[-1] < 0.5 * reconstruction[0], reconstruction


def test_adam_steps_lower_the_discriminator_loss():
    model = tiny_system(reconstruction="average")
    images, offsets, positives, _, _ = toy_batch()
    with torch.no_grad():
        aggregated = model.aggregate(images, offsets)
    optimizer = torch.optim.Adam(model.discriminator.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        out = model.discriminator_loss(aggregated, positives)
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0], losses


def test_embed_is_the_feature_of_the_aggregated_image():
    model = tiny_system().eval()
    images, offsets, *_ = toy_batch((1, 4))
    f = model.embed(images, offsets)
    assert f.shape == (2, DIM)
    torch.testing.assert_close(f, model.extractor(model(images, offsets)))


def test_state_dict_round_trip_keeps_the_centres():
    model = tiny_system().train()
    model.generator_loss(*toy_batch())
    copy = tiny_system()
    copy.load_state_dict(model.state_dict(), strict=True)
    assert torch.equal(copy.centers, model.centers) and torch.equal(copy.center_seen, model.center_seen)


def test_bad_input_is_named():
    model = tiny_system()
    images, offsets, positives, negatives, labels = toy_batch()
    with pytest.raises(ValueError, match="labels .* required"):
        model.generator_loss(images, offsets, positives, negatives)
    with pytest.raises(ValueError, match=r"labels must be in \[0, num_classes = 4\)"):
        model.generator_loss(images, offsets, positives, negatives, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="labels must have one identity per set"):
        model.generator_loss(images, offsets, positives, negatives, torch.tensor([0]))
    with pytest.raises(ValueError, match=r"positives must have shape \(2, 3, 32, 32\)"):
        model.generator_loss(images, offsets, positives[:1], negatives, labels)
    with pytest.raises(ValueError, match="set 1 is empty"):
        model.generator_loss(images, torch.tensor([0, 5, 5]), positives, negatives, labels)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        tiny_system(num_classes=None)
    with pytest.raises(ValueError, match="reconstruction must be one of"):
        tiny_system(reconstruction="median")
    with pytest.raises(TypeError, match="extractor must be an nn.Module"):
        FaceAggregation(FaceAggregator(), Discriminator(), lambda x: x, reconstruction="average")


def test_entry_point_is_registered_and_builds_small():
    assert registry._MODELS["faceagg_unet"] is faceagg_unet
    torch.manual_seed(0)
    model = faceagg_unet(num_classes=3, extractor=tiny_extractor(), widths=(2, 2, 4, 4, 4),
                         discriminator_widths=(2, 2, 2, 2), input_size=SIZE, embedding_size=DIM)
    assert model.lambda_dis == model.lambda_adv == 1.0 and model.lambda_rec == 0.5 and model.lambda_tv == 1e-4
    assert model.beta == 32.0 and model.center_rate == 0.5 and model.reconstruction == "center"
    images, offsets, positives, negatives, labels = toy_batch((1, 2))
    out = model.train().generator_loss(images, offsets, positives, negatives, labels)
    out.loss.backward()
    assert out.aggregated.shape == (2, 3, SIZE, SIZE) and torch.isfinite(out.loss)


def test_default_extractor_is_a_frozen_iresnet50():
    iresnet = pytest.importorskip("pyfacex.backbones.iresnet")
    model = faceagg_unet(num_classes=2, widths=(2, 2, 2, 2, 2), discriminator_widths=(2, 2, 2, 2), input_size=SIZE)
    assert isinstance(model.extractor, iresnet.IResNet) and model.extractor.layers == (3, 4, 14, 3)
    assert not any(p.requires_grad for p in model.extractor.parameters())
    assert model.centers.shape == (2, 512)
