"""The threshold at a target FAR, its record in the model file, and the protocol it is taken from."""
import pytest
import torch

from pyfacex.data.synthetic import SyntheticFaceWorld
from pyfacex.data.synthetic.protocols import write_lfw_like
from pyfacex.embed.calibration import calibrate_threshold, choose_protocol, store_calibration
from pyfacex.train.checkpoint import load_model, safe_load


def test_lowest_threshold_within_the_far():
    impostors = torch.arange(1000, dtype=torch.float64) / 1000          # 0.000 ... 0.999
    genuine = torch.tensor([0.95, 0.9965, 0.9, 0.5, 0.999])
    scores = torch.cat([impostors, genuine])
    labels = torch.cat([torch.zeros(1000, dtype=torch.bool), torch.ones(5, dtype=torch.bool)])
    record = calibrate_threshold(scores, labels, 0.005)
    # accept >= t: 5 impostors (0.995..0.999) are allowed, a sixth (0.994) is not
    assert record["threshold"] == pytest.approx(0.995)
    assert record["measured_far"] == pytest.approx(0.005) and record["far"] == 0.005
    assert record["tar"] == pytest.approx(2 / 5)                          # 0.9965 and 0.999
    assert (record["genuine"], record["impostors"]) == (5, 1000)
    accepted = scores[~labels] >= record["threshold"]
    assert accepted.double().mean() <= 0.005
    # the next lower score would exceed the target: the threshold is the lowest admissible
    lower = scores[scores < record["threshold"]].max()
    assert (scores[~labels] >= lower).double().mean() > 0.005


def test_a_far_below_one_impostor_cannot_be_measured():
    scores, labels = torch.rand(120), torch.arange(120) < 20          # 100 impostors
    assert calibrate_threshold(scores, labels, 0.01)["impostors"] == 100
    with pytest.raises(ValueError, match=r"far: 0.001 cannot be measured on 100 impostor pairs \(it needs at least "
                                         r"1000\)"):
        calibrate_threshold(scores, labels, 1e-3)
    for bad in (0, 1, -0.1, float("nan"), "1e-3"):
        with pytest.raises(ValueError, match="far: expected a false accept rate in"):
            calibrate_threshold(scores, labels, bad)


def test_store_keeps_the_model_and_replaces_an_earlier_calibration(model_112, tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(model_112.read_bytes())
    before = safe_load(path)
    store_calibration(path, {"threshold": 0.3, "far": 1e-2})
    store_calibration(path, {"threshold": 0.5, "far": 1e-3, "protocol": "lfw=lfw:/x"})
    after = safe_load(path)
    assert after["calibration"] == {"threshold": 0.5, "far": 1e-3, "protocol": "lfw=lfw:/x"}
    assert after.keys() - {"calibration"} == before.keys()
    assert all(torch.equal(after["state_dict"][k], v) for k, v in before["state_dict"].items())
    _, info = load_model(path)                      # still a model file load_model reads
    assert info["calibration"]["threshold"] == 0.5
    (tmp_path / "weights.pt").write_bytes(b"")
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "weights.pt")
    with pytest.raises(ValueError, match="is not a pyfacex model file"):
        store_calibration(tmp_path / "weights.pt", {"threshold": 0.1})


def test_choose_protocol(tmp_path):
    lfw = write_lfw_like(SyntheticFaceWorld(seed=0, size=32), tmp_path / "lfw", folds=2, pairs_per_fold=2,
                         identities_per_fold=2, images_per_identity=2, progress=False)
    (tmp_path / "tiny" / "Testing_Set").mkdir(parents=True)
    assert choose_protocol([f"lfw={lfw}"]) == "lfw"
    assert choose_protocol([f"lfw={lfw}", f"t=tinyface:{tmp_path / 'tiny'}"]) == "lfw"   # TinyFace has no pairs
    both = [f"lfw={lfw}", f"b={lfw / 'lfw.bin'}"]
    with pytest.raises(ValueError, match=r"--calibrate: needs one protocol with verification pairs, and 2 have "
                                         r"\(lfw, b\)"):
        choose_protocol(both)
    assert choose_protocol(both, "b") == "b"
    with pytest.raises(ValueError, match="--calibrate-on: 'x' is none of this run's protocols"):
        choose_protocol(both, "x")
    with pytest.raises(ValueError, match="--calibrate-on: 't' is a tinyface protocol"):
        choose_protocol([f"t=tinyface:{tmp_path / 'tiny'}"], "t")
    with pytest.raises(ValueError, match="none has"):
        choose_protocol([f"t=tinyface:{tmp_path / 'tiny'}"])
