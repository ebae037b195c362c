"""scripts/lfenet_lit_rate_round.py's reading of a trained LIT: ‖A·v‖ / ‖x‖, eq. 5's added term against
the feature map it is added to."""
from __future__ import annotations

import pytest
import torch

from pyfacex.backbones.iresnet import IResNet
from pyfacex.models.lfenet import LFENet

from .conftest import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("lfenet_lit_rate_round")


def tiny_lfenet() -> LFENet:
    torch.manual_seed(0)
    model = LFENet(IResNet(layers=(1, 1, 1, 1), widths=(8, 8, 16, 16), num_features=16, input_size=32))
    return model.eval()


def test_the_ratio_is_zero_for_the_identity_lit_and_linear_in_v(script):
    model = tiny_lfenet()
    images = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert script.lit_output_ratio(model, images, 3) == 0.0     # V = 0: the LIT starts as the identity
    with torch.no_grad():
        torch.nn.init.normal_(model.lit.value.weight, std=0.5)
    ratios = {t: script.lit_output_ratio(model, images, t) for t in (3, 1)}
    assert all(r > 0 for r in ratios.values()) and ratios[3] != pytest.approx(ratios[1], rel=1e-3)
    with torch.no_grad():
        model.lit.value.weight.mul_(3.0)    # A does not depend on V, so A·v (and the ratio) scales with it
    assert script.lit_output_ratio(model, images, 3) == pytest.approx(3.0 * ratios[3], rel=1e-4)


def test_the_images_must_fill_whole_sets(script):
    with pytest.raises(ValueError, match=r"images: expected a multiple of set_size=3 images, got 4"):
        script.lit_output_ratio(tiny_lfenet(), torch.zeros(4, 3, 32, 32), 3)
