"""evaluate_protocol: kind detection, the kind: prefix, metric keys, and agreement with the protocols'
own entry points on tiny synthetic protocols in the real formats."""
import functools
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import pyfacex.eval as E
from pyfacex.data import read_verification_bin
from pyfacex.data.synthetic import SyntheticFaceWorld
from pyfacex.data.synthetic.protocols import (
    write_cfp_fp_like,
    write_ijb_like,
    write_lfw_like,
    write_tinyface_like,
    write_ytf_like,
)
from pyfacex.data.transforms import down_up, hflip, normalize
from pyfacex.eval import ijb, metrics, tar_column


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    world = SyntheticFaceWorld(seed=0, size=32)
    base = tmp_path_factory.mktemp("protocols")
    return {
        "lfw": write_lfw_like(world, base / "lfw", folds=2, pairs_per_fold=3, identities_per_fold=3,
                              images_per_identity=2, progress=False),
        "cfp": write_cfp_fp_like(world, base / "cfp", folds=2, pairs_per_fold=3, identities_per_fold=2,
                                 frontal_per_identity=3, profile_per_identity=2, progress=False),
        "tinyface": write_tinyface_like(world, base / "tinyface", identities=3, probes_per_identity=1,
                                        gallery_per_identity=1, distractor_identities=2, distractors_per_identity=1,
                                        probe_resolution=(8, 12), gallery_resolution=(12, 16), progress=False),
        "ijb": write_ijb_like(world, base / "ijb", subjects=4, probe_templates_per_subject=1, gallery_stills=(1, 1),
                              probe_stills=(0, 1), probe_videos=(1, 1), frames_per_video=(2, 2),
                              impostors_per_probe=2, progress=False),
        "ytf": write_ytf_like(world, base / "ytf", splits=2, pairs_per_split=2, identities_per_split=2,
                              videos_per_identity=2, frames_per_video=(2, 3), progress=False),
    }


class Net(torch.nn.Module):
    """A fixed random linear map of a 4x4 average-pooled image: any input size, deterministic."""

    def __init__(self, dim=8):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.pool = torch.nn.AdaptiveAvgPool2d(4)
        self.linear = torch.nn.Linear(48, dim)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(dim, 48, generator=generator))
            self.linear.bias.copy_(torch.randn(dim, generator=generator))

    def forward(self, x):
        assert x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
        return self.linear(self.pool(x).flatten(1))


class Blind(torch.nn.Module):
    """Embeds every image to the same vector."""

    def forward(self, x):
        return torch.ones(len(x), 4)


@pytest.fixture(scope="module")
def net():
    return Net().train()   # evaluate_protocol must switch to eval mode and back


VERIFICATION_KEYS = {"accuracy", "accuracy_std", "val", "val_std", "far", "auc", "eer",
                     *(tar_column(far) for far in E.TAR_FARS)}


# ----------------------------------------------------------------------------------------------------
# specs and layouts


def test_parse_spec():
    none = E.SpecOptions()
    assert E.parse_spec("lfw=/data/lfw") == ("lfw", None, Path("/data/lfw"), none)
    assert E.parse_spec("x=cfp-ff:/data/cfp")[:2] == ("x", "cfp-ff")
    assert E.parse_spec("IJBC:/data/ijb")[:2] == (None, "ijbc")
    assert E.parse_spec("ijba:/data/IJB-A")[:2] == (None, "ijba")
    assert E.parse_spec("/data/a=b") == (None, None, Path("/data/a=b"), none)
    assert E.parse_spec("weird:/data")[:2] == (None, None)      # not a kind: part of the path
    with pytest.raises(ValueError, match="spec: expected 'name=path' with a non-empty name"):
        E.parse_spec("=/data")
    with pytest.raises(ValueError, match="spec: expected a path"):
        E.parse_spec("lfw=")


@pytest.mark.parametrize("spec, expected", [
    ("/data/lfw@16px", (None, None, Path("/data/lfw"), E.SpecOptions(resolution=16))),
    ("lfw:/data/lfw@8px", (None, "lfw", Path("/data/lfw"), E.SpecOptions(resolution=8))),
    ("low=bin:/data/lfw.bin@16PX", ("low", "bin", Path("/data/lfw.bin"), E.SpecOptions(resolution=16))),
    ("ytf:/data/ytf@blur9@16px", (None, "ytf", Path("/data/ytf"), E.SpecOptions(resolution=16, blur=9))),
    ("/data/me@home", (None, None, Path("/data/me@home"), E.SpecOptions())),   # not an option: the path's
])
def test_parse_spec_options_in_every_form(spec, expected):
    assert E.parse_spec(spec) == expected


def test_spec_option_errors(roots):
    with pytest.raises(ValueError, match="@16px is given twice"):
        E.parse_spec("/data/lfw@16px@16px")
    with pytest.raises(ValueError, match="N, L >= 1, got @0px"):
        E.parse_spec("/data/lfw@0px")
    with pytest.raises(ValueError, match="@blur9 blurs the frames of YTF sets; .* is lfw"):
        E.resolve_spec(f"{roots['lfw']}@blur9")


def test_spec_options_end_the_name(roots):
    assert E.resolve_spec(f"{roots['lfw']}@16px")[0] == "lfw@16px"
    assert E.resolve_spec(f"mine=lfw:{roots['lfw']}@16px")[0] == "mine@16px"
    assert E.resolve_spec(f"lfw@16px={roots['lfw']}@16px")[0] == "lfw@16px"   # not twice
    assert E.resolve_spec(f"{roots['ytf']}@blur9")[:2] == ("ytf@blur9", "ytf")


def test_detect_kind(roots, tmp_path):
    assert E.detect_kind(roots["lfw"] / "lfw.bin") == "bin"
    assert E.detect_kind(roots["lfw"]) == "lfw"
    assert E.detect_kind(roots["cfp"]) == "cfp-fp"
    assert E.detect_kind(roots["cfp"], name="cfp_ff") == "cfp-ff"
    assert E.detect_kind(roots["tinyface"]) == "tinyface"
    assert E.detect_kind(roots["ijb"]) == "ijbc"
    assert E.detect_kind(roots["ijb"] / "IJBC") == "ijbc"
    assert E.detect_kind(roots["ytf"]) == "ytf"
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"junk is no protocol layout .*pairs\.txt.*Testing_Set.*splits\.txt"):
        E.detect_kind(tmp_path / "junk")
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        E.detect_kind(tmp_path / "nowhere")


def test_unknown_layout_and_missing_path(net, tmp_path):
    with pytest.raises(ValueError, match=r"is no protocol layout pyfacex knows; expected one of: a \.bin file"):
        E.evaluate_protocol(str(tmp_path), net)
    with pytest.raises(FileNotFoundError, match="spec: .*missing does not exist"):
        E.evaluate_protocol(f"x={tmp_path / 'missing'}", net)
    with pytest.raises(ValueError, match="bin: expects an insightface .bin file"):
        E.evaluate_protocol(f"bin:{tmp_path}", net)


# ----------------------------------------------------------------------------------------------------
# verification


def test_bin_and_pair_list_of_one_protocol_agree(roots, net):
    from_bin = E.evaluate_protocol(roots["lfw"] / "lfw.bin", net, folds=2, batch_size=5)
    from_list = E.evaluate_protocol(f"mylfw={roots['lfw']}", net, batch_size=3)
    assert (from_bin.name, from_bin.kind, from_bin.primary) == ("lfw", "bin", "accuracy")
    assert (from_list.name, from_list.kind) == ("mylfw", "lfw")
    # Embedded in batches of 5 and of 3: float32 results of different batch shapes may differ by a few
    # ulps (the kernels' blocking), so the scores agree to rounding and the metrics follow them.
    assert set(from_list.metrics) == VERIFICATION_KEYS
    assert from_list.metrics == pytest.approx(from_bin.metrics, rel=1e-5, abs=1e-6, nan_ok=True)
    np.testing.assert_allclose(from_list.scores, from_bin.scores, rtol=0, atol=1e-6)
    assert from_list.is_genuine.tolist() == [True] * 3 + [False] * 3 + [True] * 3 + [False] * 3
    assert net.training    # the mode is restored


def test_scores_are_the_cosines_of_the_embeddings_and_give_the_metrics(roots, net):
    result = E.evaluate_protocol(roots["lfw"] / "lfw.bin", net, folds=2)
    images, issame = read_verification_bin(roots["lfw"] / "lfw.bin")
    features = E.embed(net, images)    # flip-sum
    expected = torch.nn.functional.cosine_similarity(features[0::2].double(), features[1::2].double())
    np.testing.assert_allclose(result.scores, expected.numpy(), rtol=0, atol=1e-12)
    assert result.is_genuine.tolist() == issame.tolist()
    assert result.metrics["auc"] == pytest.approx(metrics.auc(torch.from_numpy(result.scores),
                                                               torch.from_numpy(result.is_genuine)))
    reference = E.evaluate_bin(net, roots["lfw"] / "lfw.bin", folds=2)
    assert result.metrics["accuracy"] == reference.accuracy and result.details == reference.as_dict()
    no_flip = E.evaluate_protocol(roots["lfw"] / "lfw.bin", net, folds=2, flip=False)
    assert no_flip.metrics["accuracy"] == E.evaluate_bin(net, roots["lfw"] / "lfw.bin", folds=2, flip=False).accuracy


@pytest.mark.parametrize("form", ["{lfw}@16px", "lfw@16px=bin:{bin}@16px", "lfw:{lfw}@16px"])
def test_down_up_option_degrades_every_image(roots, net, form):
    """QAFace Tab. 1: the verification set down-sampled to 16x16 and up-sampled back, in every spec form."""
    result = E.evaluate_protocol(form.format(lfw=roots["lfw"], bin=roots["lfw"] / "lfw.bin"), net, folds=2)
    assert result.name == "lfw@16px"
    images, issame = read_verification_bin(roots["lfw"] / "lfw.bin")
    features = E.embed(net, down_up(images, 16))    # flip-sum of the degraded images
    expected = torch.nn.functional.cosine_similarity(features[0::2].double(), features[1::2].double())
    np.testing.assert_allclose(result.scores, expected.numpy(), rtol=0, atol=1e-6)
    clean = E.evaluate_protocol(roots["lfw"] / "lfw.bin", net, folds=2)
    assert np.abs(result.scores - clean.scores).max() > 1e-3


def test_down_up_option_on_a_set_protocol(roots, net):
    low = E.evaluate_protocol(f"{roots['ytf']}@8px", net, image_size=16)
    reference = E.evaluate_ytf(roots["ytf"], E.mean_pooling(lambda x: flip_sum(net.eval(), down_up(x, 8))),
                               transform=functools.partial(E.video.crop_face, size=16))
    net.train()
    assert low.name == "ytf@8px" and low.metrics["accuracy"] == reference.accuracy
    assert low.metrics["auc"] == pytest.approx(reference.auc, abs=1e-9)


def test_a_blind_model_is_at_chance(roots):
    result = E.evaluate_protocol(roots["lfw"], Blind())
    assert result.metrics["accuracy"] == 0.5 and result.metrics["auc"] == 0.5 and result.metrics["eer"] == 0.5
    np.testing.assert_allclose(result.scores, 1.0)


@pytest.mark.parametrize("kind", ["cfp-fp", "cfp-ff"])
def test_cfp_kinds_by_prefix_equal_their_bin(roots, net, kind):
    result = E.evaluate_protocol(f"{kind}:{roots['cfp']}", net)
    assert (result.name, result.kind) == (kind, kind)
    same_bin = E.evaluate_protocol(roots["cfp"] / f"cfp_{kind[-2:]}.bin", net, folds=2)
    assert result.metrics == same_bin.metrics
    assert E.evaluate_protocol(f"cfp_ff={roots['cfp']}", net).kind == "cfp-ff"


def test_image_size_resizes(roots):
    sizes = []

    class Spy(Net):
        def forward(self, x):
            sizes.append(tuple(x.shape[2:]))
            return super().forward(x)

    E.evaluate_protocol(roots["lfw"], Spy(), image_size=20)
    E.evaluate_protocol(roots["lfw"] / "lfw.bin", Spy(), image_size=24, folds=2)
    assert set(sizes) == {(20, 20), (24, 24)}
    with pytest.raises(ValueError, match="image_size"):
        E.evaluate_protocol(roots["lfw"], Net(), image_size=0)


# ----------------------------------------------------------------------------------------------------
# TinyFace, IJB, YTF


def flip_sum(model, images):
    """The reference features: normalise, model, plus the mirrored image's."""
    with torch.no_grad():
        return model(normalize(images)) + model(normalize(hflip(images)))


def test_tinyface(roots, net):
    result = E.evaluate_protocol(roots["tinyface"], net, image_size=32, batch_size=4)
    assert (result.kind, result.primary, result.scores, result.is_genuine) == ("tinyface", "rank-1", None, None)
    assert set(result.metrics) == {"rank-1", "rank-3", "rank-5", "rank-10", "rank-20", "mAP"}   # LGAF Tab. 6: rank-3
    reference = E.evaluate_tinyface(roots["tinyface"], functools.partial(flip_sum, net.eval()), image_size=32)
    net.train()
    assert result.metrics["rank-1"] == reference.rank[1] and result.metrics["rank-3"] == reference.rank[3]
    assert result.metrics["mAP"] == pytest.approx(reference.mean_average_precision)
    assert {"tinyface rank-1", "tinyface rank-3", "tinyface rank-5", "tinyface mAP"} <= set(E.protocol_cells(result))
    assert result.details["rank"]["1"] == result.value
    # the ranked features come back with their labels; ranking them again gives the same rank-1
    f = result.features
    assert set(f) == {"probe_feats", "gallery_feats", "probe_labels", "gallery_labels"}
    assert f["probe_feats"].shape[0] == f["probe_labels"].shape[0] and f["gallery_feats"].dtype == np.float32
    again = E.identification(*(torch.from_numpy(f[k]) for k in ("probe_feats", "probe_labels", "gallery_feats",
                                                                 "gallery_labels")), ranks=(1,), fpirs=())
    assert again.rank[1] == pytest.approx(result.metrics["rank-1"])


def test_tinyface_default_side_is_112(roots):
    sizes = []

    class Spy(Net):
        def forward(self, x):
            sizes.append(tuple(x.shape[2:]))
            return super().forward(x)

    E.evaluate_protocol(f"tinyface:{roots['tinyface']}", Spy())
    assert set(sizes) == {(112, 112)}


def test_ijb(roots, net):
    result = E.evaluate_protocol(roots["ijb"], net, batch_size=4)
    assert (result.name, result.kind, result.primary) == ("ijb", "ijbc", "TAR@FAR=1e-4 (nearest)")
    reference = ijb.evaluate_ijb(roots["ijb"], functools.partial(lambda m, x: m(normalize(x)), net.eval()),
                                 image_size=None, progress=False)
    net.train()
    np.testing.assert_allclose(result.scores, reference.verification.scores.double().numpy(), atol=1e-6)
    assert result.is_genuine.tolist() == reference.verification.labels.tolist()
    for convention in ("nearest", "interpolated"):
        for far, tar in zip(ijb.FARS, reference.verification.tar[convention].tolist()):
            got = result.metrics[tar_column(far, convention)]
            assert got == tar or (math.isnan(got) and math.isnan(tar))
    assert {"rank-1", "rank-5", "mAP", "TPIR@FPIR=0.01", "TPIR@FPIR=0.1"} <= set(result.metrics)
    assert result.metrics["rank-1"] == reference.identification.rank[1]
    # the IJBC folder itself, and the explicit prefix
    assert E.evaluate_protocol(f"ijbc:{roots['ijb'] / 'IJBC'}", net).metrics.keys() == result.metrics.keys()


def test_ijb_both_targets_is_ambiguous(roots, tmp_path):
    shutil.copytree(roots["ijb"] / "IJBC" / "meta", tmp_path / "IJBC" / "meta")
    shutil.copytree(roots["ijb"] / "IJBC" / "meta", tmp_path / "IJBB" / "meta")
    with pytest.raises(ValueError, match="holds both IJB-B and IJB-C; write ijbb:"):
        E.detect_kind(tmp_path)


def test_ytf(roots, net):
    result = E.evaluate_protocol(roots["ytf"], net, image_size=16, batch_size=7)
    assert (result.kind, result.primary) == ("ytf", "accuracy") and set(result.metrics) == VERIFICATION_KEYS
    reference = E.evaluate_ytf(roots["ytf"], E.mean_pooling(functools.partial(flip_sum, net.eval())),
                               transform=functools.partial(E.video.crop_face, size=16))
    net.train()
    assert result.metrics["accuracy"] == reference.accuracy
    assert result.metrics["auc"] == pytest.approx(reference.auc, abs=1e-12)
    assert len(result.scores) == len(result.is_genuine) == 4 * 2
