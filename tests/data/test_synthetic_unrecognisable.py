"""Unrecognisable training faces (QAFace, Sec. 3.5): the stated fraction, really degraded, chosen by the seed."""
import json

import numpy as np
import pytest
import torch

from pyfacex.data import RecordDataset, decode_image, encode_jpeg
from pyfacex.data.synthetic import Nuisance, SyntheticFaceWorld
from pyfacex.data.synthetic.export import write_training_set
from pyfacex.data.synthetic.nuisance import OCCLUDERS
from pyfacex.data.synthetic.unrecognisable import UNRECOGNISABLE_KINDS, choose_unrecognisable, unrecognisable_overrides

SIZE, IDS, PER_ID = 48, 6, 4


@pytest.fixture(scope="module")
def world():
    return SyntheticFaceWorld(seed=4, size=SIZE, nuisance=Nuisance(difficulty=0.2), chunk=8)


@pytest.fixture(scope="module")
def written(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("unrecognisable")
    return write_training_set(world, out, IDS, PER_ID, unrecognisable=0.25, progress=False)


def detail(images: torch.Tensor) -> torch.Tensor:
    """(B,) mean absolute difference between horizontal neighbours inside the face box: local detail."""
    face = images[:, :, SIZE // 4:3 * SIZE // 4, SIZE // 4:3 * SIZE // 4].float()
    return (face[..., 1:] - face[..., :-1]).abs().mean(dim=(1, 2, 3))


def test_the_fraction_is_honoured_and_recorded(written):
    codes = np.load(written / "ground_truth.npz")["unrecognisable"]
    assert codes.shape == (IDS * PER_ID,) and int((codes > 0).sum()) == 6   # round(0.25 · 24)
    assert sorted(np.bincount(codes, minlength=4)[1:].tolist()) == [2, 2, 2]  # the kinds take turns
    info = json.loads((written / "info.json").read_text())
    assert info["unrecognisable"] == {"fraction": 0.25, "count": 6, "blur": 2, "occlusion": 2, "low_resolution": 2}


def test_the_chosen_images_are_degraded_and_the_others_untouched(world, written):
    truth, record = np.load(written / "ground_truth.npz"), RecordDataset(written)
    codes = torch.from_numpy(truth["unrecognisable"])
    identity, sample = torch.from_numpy(truth["identity"]), torch.from_numpy(truth["sample"])
    ordinary = world.render(identity, sample)
    stored = torch.stack([record[i][0] for i in range(len(record))])
    plain = codes == 0
    assert torch.equal(stored[plain], torch.stack([decode_image(encode_jpeg(im, 95)) for im in ordinary.images[plain]]))
    for code, kind in enumerate(UNRECOGNISABLE_KINDS, 1):
        rows = (codes == code).nonzero().flatten()
        overrides = unrecognisable_overrides(kind, SIZE)
        degraded = world.render(identity[rows], sample[rows], **overrides)
        assert torch.equal(stored[rows], torch.stack([decode_image(encode_jpeg(im, 95)) for im in degraded.images]))
        for name, value in overrides.items():   # the ground truth records the degradation
            expected = OCCLUDERS[value] if isinstance(value, str) else value
            assert np.allclose(truth[f"nuisance_{name}"][rows.numpy()], expected)
        if kind != "occlusion":   # blur and 2-pixel faces: no local detail left
            assert bool((detail(stored[rows]) < 0.5 * detail(ordinary.images[rows])).all())
    occluded = (codes == 2).nonzero().flatten()
    assert (truth["nuisance_occluder"][occluded.numpy()] == OCCLUDERS["block"]).all()
    assert not truth["visible"][occluded.numpy()][:, 36:48].any()   # every eye landmark hidden by the block


def test_the_choice_is_a_function_of_the_seed(world, written, tmp_path):
    codes = np.load(written / "ground_truth.npz")["unrecognisable"]
    again = write_training_set(SyntheticFaceWorld(seed=4, size=SIZE, nuisance=Nuisance(difficulty=0.2), chunk=64),
                               tmp_path / "again", IDS, PER_ID, unrecognisable=0.25, formats="record", progress=False)
    assert np.array_equal(np.load(again / "ground_truth.npz")["unrecognisable"], codes)   # any chunking
    assert (again / "train.rec").read_bytes() == (written / "train.rec").read_bytes()
    identity = torch.arange(IDS).repeat_interleave(PER_ID)
    sample = torch.arange(PER_ID).repeat(IDS)
    assert torch.equal(choose_unrecognisable(4, identity, sample, 0.25), torch.from_numpy(codes))
    assert not torch.equal(choose_unrecognisable(5, identity, sample, 0.25), torch.from_numpy(codes))
    assert choose_unrecognisable(4, identity, sample, 0.0).eq(0).all()
    assert choose_unrecognisable(4, identity, sample, 1.0).gt(0).all()


def test_default_writes_no_unrecognisable_record(world, tmp_path):
    out = write_training_set(world, tmp_path, 2, 2, formats="record", progress=False)
    assert "unrecognisable" not in np.load(out / "ground_truth.npz")
    assert "unrecognisable" not in json.loads((out / "info.json").read_text())


@pytest.mark.parametrize("kwargs, error, message", [
    ({"unrecognisable": 1.5}, ValueError, r"unrecognisable: expected a number in \[0, 1\]"),
    ({"unrecognisable": "0.1"}, TypeError, "unrecognisable"),
    ({"unrecognisable": 0.1, "frames_per_video": 2}, ValueError, "unrecognisable: unrecognisable images are still"),
])
def test_bad_arguments_name_unrecognisable(world, tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        write_training_set(world, tmp_path, 1, 2, progress=False, **kwargs)


def test_unknown_kind_is_named():
    with pytest.raises(ValueError, match="kind: expected one of blur, occlusion, low_resolution"):
        unrecognisable_overrides("fog", 112)
