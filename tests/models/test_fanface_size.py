"""FAN-Face's model size (Sec. 3.5): every feature-integration variant of Tab. 1 adds 40K-110K parameters to
the real iResNet-34, counted on the model (meta device), and the README's table is the computed one."""
from pathlib import Path

import pytest

from pyfacex.backbones.iresnet import IRESNET_LAYERS
from pyfacex.models.fanface_size import TABLE_VARIANTS, extra_parameters, parameter_table

WIDTHS = (64, 128, 256, 512)  # iResNet-34's stages
FAN_WIDTH = 256
STEM = 51 * 64 * 3 * 3  # conv1 reads 3 + 51 channels (eq. 1)
INTEGRATION_VARIANTS = [v for _, v in TABLE_VARIANTS if "," in v] + ["H2,1M,SL,h2l-2", "H2,1M,AL,h2l-2"]


@pytest.mark.parametrize("variant", INTEGRATION_VARIANTS)
def test_every_integration_variant_adds_40k_to_110k_parameters_to_resnet34(variant):
    assert 40_000 <= extra_parameters(variant) <= 110_000


def test_the_counts_are_those_of_the_reduced_reading():
    # BN(256) + 1×1 conv 256 → r per resolution; per point 1×1 conv C → r (y), BL 1×1 conv 2r → C + BN,
    # PReLU, γ.
    r = 4
    align = sum(2 * FAN_WIDTH + FAN_WIDTH * r for _ in WIDTHS)

    def point(c):
        return c * r + 2 * r * c + 2 * c + c + 1

    assert extra_parameters("H2") == STEM
    assert extra_parameters("H2,1-1,BL,h2l-2") == STEM + align + sum(point(c) for c in WIDTHS)
    blocks = IRESNET_LAYERS[34]
    assert extra_parameters("H2,1M,BL,h2l-2") == STEM + align + sum(n * point(c) for n, c in zip(blocks, WIDTHS))


def test_the_wide_switch_is_the_literal_layer_of_about_1m_parameters():
    # Fig. 3 read literally: BN(256), 1×1 conv 256 → C, 1×1 conv 2C → C, BN(C), PReLU(C), γ, per stage.
    basic = sum(2 * FAN_WIDTH + FAN_WIDTH * c + 2 * c * c + 2 * c + c + 1 for c in WIDTHS)
    simple = sum(2 * FAN_WIDTH + FAN_WIDTH * c + c + 1 for c in WIDTHS)
    assert extra_parameters("H2,1-1,BL,h2l-2", mix_width=None) == STEM + basic == 976_388
    assert extra_parameters("H2,1-1,SL,h2l-2", mix_width=None) == STEM + simple


def test_the_readme_table_is_the_computed_one():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert parameter_table() in readme, "README.md's FAN-Face table: paste `python -m pyfacex.models.fanface_size`"
