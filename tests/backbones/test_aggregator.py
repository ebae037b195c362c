"""The Face Aggregation Network's U-Net aggregator and discriminator (Face Aggregation Network Sec. 3.1)."""
import pytest
import torch
from torch import nn

from pyfacex.backbones.aggregator import Discriminator, FaceAggregator

WIDTHS = (4, 6, 8, 8, 12)


@pytest.fixture
def aggregator():
    torch.manual_seed(0)
    return FaceAggregator(WIDTHS).eval()


def ragged(sizes, size=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(sum(sizes), 3, size, size, generator=g)
    offsets = torch.tensor([0, *sizes]).cumsum(0)
    return images, offsets


@pytest.mark.parametrize("sizes", [(1,), (2,), (5,), (1, 2, 5)])
def test_one_image_per_set_for_any_set_size(aggregator, sizes):
    images, offsets = ragged(sizes)
    out = aggregator(images, offsets)
    assert out.shape == (len(sizes), 3, 32, 32) and torch.isfinite(out).all()


def test_output_is_invariant_to_permuting_a_sets_members(aggregator):
    images, offsets = ragged((3, 5))
    order = torch.cat([torch.tensor([2, 0, 1]), 3 + torch.tensor([4, 1, 3, 0, 2])])
    out, permuted = aggregator(images, offsets), aggregator(images[order], offsets)
    torch.testing.assert_close(permuted, out, rtol=1e-5, atol=1e-6)
    # The members do matter: swapping one member for another image changes the result.
    other = images.clone()
    other[0] = torch.randn(3, 32, 32)
    assert not torch.allclose(aggregator(other, offsets)[0], out[0], atol=1e-4)


def test_ragged_batch_equals_each_set_alone(aggregator):
    sizes = (2, 1, 4)
    images, offsets = ragged(sizes)
    batched = aggregator(images, offsets)
    for s in range(len(sizes)):
        members = images[offsets[s]:offsets[s + 1]]
        alone = aggregator(members, torch.tensor([0, members.shape[0]]))
        torch.testing.assert_close(batched[s:s + 1], alone, rtol=1e-5, atol=1e-6)


def test_set_members_exchange_information(aggregator):
    # Without global concatenation each member would run alone and only the final max would mix
    # them: the pooled map of {x, y} would be the max of the maps of {x} and {y}.
    def pooled(images, offsets):
        captured = []
        handle = aggregator.head.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
        aggregator(images, offsets)
        handle.remove()
        return captured[0]

    images, offsets = ragged((2,))
    apart = [pooled(images[i:i + 1], torch.tensor([0, 1])) for i in range(2)]
    assert not torch.allclose(pooled(images, offsets), torch.maximum(*apart), atol=1e-4)


def test_paper_layout_at_112_goes_down_to_7x7_and_back():
    model = FaceAggregator((2, 2, 2, 2, 2)).eval()
    seen = []
    model.encoder[-1].register_forward_hook(lambda module, args, out: seen.append(out.shape[-2:]))
    images, offsets = ragged((2,), size=112)
    assert model(images, offsets).shape == (1, 3, 112, 112)
    assert seen == [torch.Size([7, 7])]


def test_no_activation_after_the_last_conv(aggregator):
    # ELU is bounded below by -1; the last conv's output is not.
    with torch.no_grad():
        aggregator.head[-1].bias.fill_(-5.0)
    assert aggregator(*ragged((2,))).max() < -1.0


def test_gradients_reach_every_member(aggregator):
    images, offsets = ragged((3,))
    images.requires_grad_(True)
    aggregator(images, offsets).sum().backward()
    assert (images.grad.flatten(1).abs().sum(1) > 0).all()


def test_aggregator_rejects_bad_input(aggregator):
    images, offsets = ragged((2, 1))
    with pytest.raises(ValueError, match="set 1 is empty"):
        aggregator(images, torch.tensor([0, 3, 3]))
    with pytest.raises(ValueError, match="multiples of 16"):
        aggregator(torch.randn(3, 3, 40, 40), offsets)
    with pytest.raises(ValueError, match="3 channels"):
        aggregator(torch.randn(3, 1, 32, 32), offsets)
    with pytest.raises(ValueError, match="offsets\\[-1\\]"):
        aggregator(images, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="widths must be 5 positive ints"):
        FaceAggregator((4, 4, 4))


def test_discriminator_downsamples_twice_and_weighs_every_pixel():
    torch.manual_seed(0)
    model = Discriminator((4, 4, 8, 6), input_size=112)
    images = torch.randn(2, 3, 112, 112)
    assert model.features(images).shape == (2, 6, 28, 28)
    assert isinstance(model.fc, nn.Linear) and model.fc.in_features == 6 * 28 * 28
    logits = model(images)
    assert logits.shape == (2,)
    # A fully connected layer gives each position its own weight (a pooled head would not care where):
    # rolling the image changes the logit.
    assert not torch.allclose(model(images.roll(8, dims=-1)), logits, atol=1e-5)
    leaky = [m for m in model.features if isinstance(m, nn.LeakyReLU)]
    assert len(leaky) == 4 and leaky[0].negative_slope == 0.2


def test_discriminator_rejects_bad_input():
    model = Discriminator((4, 4, 4, 4), input_size=32)
    with pytest.raises(ValueError, match=r"shape \(b, 3, 32, 32\)"):
        model(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="multiple of 4"):
        Discriminator(input_size=30)
    with pytest.raises(ValueError, match="widths must be 4 positive ints"):
        Discriminator((4, 4))
