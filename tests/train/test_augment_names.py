"""The ``data.augment`` names of QAFace's Tab. 5: crop only, down-sample only, crop + down-sample."""
from __future__ import annotations

import pytest
import torch

from pyfacex.data.transforms import LowQualityAugment
from pyfacex.train.data import AUGMENTS, build_augment

TAB5 = {  # name -> (p_crop, p_low_res); never photometric jitter (Sec. 4.4 names only these two)
    "crop": (0.2, 0.0), "down_sample": (0.0, 0.2), "crop_down_sample": (0.2, 0.2),
    "crop@0.1": (0.1, 0.0), "down_sample@0.1": (0.0, 0.1), "crop_down_sample@0.1": (0.1, 0.1),
}


@pytest.mark.parametrize("name", sorted(TAB5))
def test_tab5_names_build_low_quality_steps_without_photometric(name):
    augment = AUGMENTS[name]()
    assert isinstance(augment, LowQualityAugment)
    assert (augment.p_crop, augment.p_low_res, augment.p_photometric) == (*TAB5[name], 0.0)


@pytest.mark.parametrize("name, crops, down_samples", [
    ("crop", True, False), ("down_sample", False, True), ("crop_down_sample", True, True)])
def test_tab5_names_do_only_their_steps_at_p(name, crops, down_samples):
    images = torch.randint(0, 256, (400, 3, 16, 16), dtype=torch.uint8)
    _, params = AUGMENTS[name]().with_params(images, torch.Generator().manual_seed(0))
    cropped = (params.crop_boxes != torch.tensor([0, 0, 16, 16])).any(1).float().mean()
    down_sampled = (params.low_res_size < 16).float().mean()
    for fraction, on in ((cropped, crops), (down_sampled, down_samples)):
        assert (0.13 < fraction < 0.27) if on else fraction == 0  # p = 0.2 of 400 images
    assert bool((params.photometric == 1).all())


def test_build_augment_composes_the_names_in_order():
    augment = build_augment(["flip", "crop_down_sample"])
    assert [type(t).__name__ for t in augment.transforms] == ["RandomHorizontalFlip", "LowQualityAugment"]
    with pytest.raises(ValueError, match="data.augment: unknown 'crop@0.3'"):
        build_augment(["crop@0.3"])
