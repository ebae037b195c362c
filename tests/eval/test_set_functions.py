"""Set-level evaluation: a model's own set function (LFENet's LIT across a template, the Face Aggregation
Network's aggregate-then-embed) on IJB-A/B/C templates and YTF sets, against the mean of image embeddings."""
import functools

import numpy as np
import pytest
import torch

import pyfacex.eval as E
from pyfacex.backbones.aggregator import Discriminator, FaceAggregator
from pyfacex.backbones.iresnet import IResNet
from pyfacex.data import align_face, decode_image
from pyfacex.data.synthetic import SyntheticFaceWorld
from pyfacex.data.synthetic.protocols import write_ijb_like, write_ijba_like, write_ytf_like
from pyfacex.data.transforms import normalize
from pyfacex.eval import ijb, tar_column
from pyfacex.eval.video import crop_face
from pyfacex.models.face_aggregation import FaceAggregation
from pyfacex.models.lfenet import LFENet
from pyfacex.train.checkpoint import embedder_for

SIZE = 32


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    world = SyntheticFaceWorld(seed=0, size=SIZE)
    base = tmp_path_factory.mktemp("set_protocols")
    return {
        "ijb": write_ijb_like(world, base / "ijb", subjects=4, probe_templates_per_subject=1, gallery_stills=(2, 3),
                              probe_stills=(1, 2), probe_videos=(1, 1), frames_per_video=(2, 3),
                              impostors_per_probe=2, progress=False),
        "ijba": write_ijba_like(world, base / "ijba", subjects=5, splits=2, test_subjects=3, templates_per_subject=2,
                                stills=(1, 2), videos=(0, 1), frames_per_video=(2, 3), impostors_per_template=2,
                                progress=False),
        "ytf": write_ytf_like(world, base / "ytf", splits=2, pairs_per_split=2, identities_per_split=2,
                              videos_per_identity=2, frames_per_video=(3, 4), progress=False),
    }


@pytest.fixture(scope="module")
def lfenet():
    """A tiny LFENet whose LIT is not the identity (V != 0), θ = 2 so that templates are segmented.

    Its attention is sharpened (scale 30): with near-uniform attention every local feature receives
    V(mean of the set's local features), and since the compression head is affine in eval mode the
    mean of the set's embeddings would equal the mean of its images' own embeddings."""
    torch.manual_seed(0)
    backbone = IResNet(layers=(1, 1, 1, 1), widths=(8, 8, 16, 16), num_features=16, input_size=SIZE)
    model = LFENet(backbone, segment=2, scale=30.0)
    with torch.no_grad():
        torch.nn.init.normal_(model.lit.value.weight, std=2.0)
        for module in model.modules():   # non-trivial running statistics: eval mode is observable
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.train()   # the protocols must switch to eval mode and back


@pytest.fixture(scope="module")
def faceagg():
    torch.manual_seed(0)
    extractor = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                    torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 8))
    return FaceAggregation(FaceAggregator((4, 4, 8, 8, 8)), Discriminator((4, 4, 8, 8), SIZE), extractor,
                           reconstruction="average").train()


def set_representation(model, images):
    """The oracle: model.set_representation of one set of uint8 images, in eval mode."""
    model.eval()
    try:
        with torch.no_grad():
            return model.set_representation(normalize(images), torch.tensor([0, len(images)]))[0].double()
    finally:
        model.train()


def cosines(features, pairs):
    unit = {t: f / f.norm() for t, f in features.items()}
    return np.array([float(unit[a] @ unit[b]) for a, b in pairs])


# ----------------------------------------------------------------------------------------------------
# the set-function protocol


def test_select_set_fn(lfenet):
    mean = E.mean_pooling(lambda x: x.float().flatten(1))
    assert E.has_set_function(lfenet) and not E.has_set_function(torch.nn.Linear(2, 2))
    assert E.select_set_fn(None, lfenet, lambda: mean)[0] == "model"
    assert E.select_set_fn("auto", torch.nn.Linear(2, 2), lambda: mean) == ("mean", mean)
    assert E.select_set_fn("mean", lfenet, lambda: mean) == ("mean", mean)
    with pytest.raises(ValueError, match="set_function: 'model' needs a model with set_representation.*Linear"):
        E.select_set_fn("model", torch.nn.Linear(2, 2), lambda: mean)
    with pytest.raises(ValueError, match="set_function: expected one of auto, model, mean, got 'max'"):
        E.select_set_fn("max", lfenet, lambda: mean)
    with pytest.raises(TypeError, match="model: expected a module with set_representation"):
        E.model_set_fn(torch.nn.Linear(2, 2))


def test_model_set_fn_is_set_representation_per_set_and_flip_adds_the_mirrored_set(lfenet):
    images = torch.randint(0, 256, (5, 3, SIZE, SIZE), dtype=torch.uint8)
    offsets = torch.tensor([0, 3, 5])
    rows = E.model_set_fn(lfenet, flip=False)(images, offsets)
    assert lfenet.training    # restored
    for k in range(2):
        torch.testing.assert_close(rows[k].double(), set_representation(lfenet, images[offsets[k]:offsets[k + 1]]),
                                   rtol=1e-5, atol=1e-5)
    flipped = E.model_set_fn(lfenet, flip=True)(images, offsets)
    mirrored = E.model_set_fn(lfenet, flip=False)(images.flip(-1), offsets)
    torch.testing.assert_close(flipped, rows + mirrored, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------------
# IJB-B/C


def ijbc_templates(root):
    """{template id: uint8 (n, 3, S, S)}: the loose crops aligned by their five points (the default)."""
    listing = ijb.read_face_tid_mid(root / "IJBC/meta/ijbc_face_tid_mid.txt")
    points = ijb.read_name_5pts_score(root / "IJBC/meta/ijbc_name_5pts_score.txt").points
    groups = {}
    for k, (name, template) in enumerate(zip(listing.images, listing.template_ids.tolist())):
        image = decode_image((root / "IJBC/loose_crop" / name).read_bytes())
        groups.setdefault(template, []).append(align_face(image, points[k], SIZE))
    return {t: torch.stack(images) for t, images in groups.items()}


def test_an_evaluation_leaves_lfenet_in_its_own_mode(roots, lfenet):
    # evaluations switch to eval mode and restore the embedder's mode: embedder_for's wrapper must
    # carry the model's, or an eval-mode LFENet comes back in train mode (BN batch statistics)
    for mode in (False, True):   # ends in the fixture's own train mode
        lfenet.train(mode)
        E.evaluate_protocol(roots["ijb"], embedder_for(lfenet), flip=False, image_size=SIZE)
        assert lfenet.training is mode


def test_ijbc_model_runs_the_lit_across_each_template(roots, lfenet):
    embedder = embedder_for(lfenet)
    model = E.evaluate_protocol(roots["ijb"], embedder, set_model=lfenet, set_function="model", flip=False,
                                batch_size=4, image_size=SIZE)
    mean = E.evaluate_protocol(roots["ijb"], embedder, set_model=lfenet, set_function="mean", flip=False,
                               image_size=SIZE)
    assert (model.details["set_function"], mean.details["set_function"]) == ("model", "mean")
    pairs = ijb.read_template_pairs(roots["ijb"] / "IJBC/meta/ijbc_template_pair_label.txt").pairs.tolist()
    expected = cosines({t: set_representation(lfenet, x) for t, x in ijbc_templates(roots["ijb"]).items()}, pairs)
    np.testing.assert_allclose(model.scores, expected, rtol=0, atol=2e-6)
    assert np.abs(model.scores - mean.scores).max() > 1e-4    # the LIT across the template matters
    # "auto" picks the model's own set function
    auto = E.evaluate_protocol(roots["ijb"], embedder, set_model=lfenet, flip=False, batch_size=4, image_size=SIZE)
    np.testing.assert_allclose(auto.scores, model.scores, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------------------------------
# IJB-A


def ijba_templates(root, split):
    """{template id: uint8 (n, 3, S, S)} of one split, cropped to the CSV's boxes independently of the code."""
    metadata = ijb.read_ijba_metadata(root / f"IJB-A_11_sets/split{split}/verify_metadata_{split}.csv")
    groups = {}
    for file, box, template in zip(metadata.files, metadata.boxes.tolist(), metadata.template_ids.tolist()):
        x, y, w, h = box
        image = decode_image((root / "images" / file).read_bytes())
        groups.setdefault(template, []).append(crop_face(image, torch.tensor([x + w / 2, y + h / 2, w, h]), SIZE))
    return {t: torch.stack(images) for t, images in groups.items()}


def ijba_oracle(root, feature):
    """Per split: the pair scores of the template features ``feature(images)`` and their TAR@FAR."""
    scores, tars = [], []
    for split in (1, 2):
        features = {t: feature(x) for t, x in ijba_templates(root, split).items()}
        metadata = ijb.read_ijba_metadata(root / f"IJB-A_11_sets/split{split}/verify_metadata_{split}.csv")
        pairs = ijb.read_ijba_comparisons(root / f"IJB-A_11_sets/split{split}/verify_comparisons_{split}.csv",
                                          metadata)
        split_scores = cosines(features, pairs.pairs.tolist())
        scores.append(split_scores)
        tars.append(E.tar_at_far(torch.from_numpy(split_scores), pairs.labels, list(ijb.IJBA_FARS)).numpy())
    return np.concatenate(scores), np.stack(tars)


def test_ijba_model_and_baseline_avg(roots, lfenet):
    embedder = embedder_for(lfenet)
    spec = f"ijba:{roots['ijba']}"
    model = E.evaluate_protocol(spec, embedder, set_model=lfenet, set_function="model", flip=False, image_size=SIZE,
                                batch_size=5)
    baseline = E.evaluate_protocol(spec, embedder, set_model=lfenet, set_function="mean", flip=False,
                                   image_size=SIZE)
    assert not model.details["aligned"] and not baseline.details["aligned"]   # IJB-A crops its face boxes
    assert (model.kind, model.primary) == ("ijba", "TAR@FAR=1e-3 (interp.)")
    assert E.detect_kind(roots["ijba"]) == "ijba" and E.detect_kind(roots["ijba"] / "IJB-A_11_sets") == "ijba"

    expected, tars = ijba_oracle(roots["ijba"], functools.partial(set_representation, lfenet))
    np.testing.assert_allclose(model.scores, expected, rtol=0, atol=2e-6)
    # the features it dumps (split after split) score the pairs again
    dumped, rescored = model.features, []
    for split in (1, 2):
        rows = dumped["template_splits"] == split
        features = dict(zip(dumped["template_ids"][rows].tolist(), torch.from_numpy(dumped["template_feats"][rows])))
        folder = roots["ijba"] / f"IJB-A_11_sets/split{split}"
        metadata = ijb.read_ijba_metadata(folder / f"verify_metadata_{split}.csv")
        pairs = ijb.read_ijba_comparisons(folder / f"verify_comparisons_{split}.csv", metadata)
        rescored.append(cosines(features, pairs.pairs.tolist()))
    np.testing.assert_allclose(np.concatenate(rescored), model.scores, rtol=0, atol=2e-6)
    for k, far in enumerate(ijb.IJBA_FARS):   # mean ± std over the splits
        assert model.metrics[tar_column(far)] == pytest.approx(tars[:, k].mean(), abs=1e-9)
        assert model.metrics[tar_column(far) + " std"] == pytest.approx(tars[:, k].std(), abs=1e-9)

    def plain_average(images):   # "Baseline (Avg.)": the mean of the images' own embeddings
        return E.embed(embedder, images, flip=False).double().mean(0)

    expected_avg, _ = ijba_oracle(roots["ijba"], plain_average)
    np.testing.assert_allclose(baseline.scores, expected_avg, rtol=0, atol=2e-6)
    assert np.abs(model.scores - baseline.scores).max() > 1e-4
    assert lfenet.training


def test_ijba_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no IJB-A 1:1 split"):
        ijb.evaluate_ijba(tmp_path, E.mean_pooling(lambda x: x.float().flatten(1)))


# ----------------------------------------------------------------------------------------------------
# YTF: the Face Aggregation Network's "ours" against "avg"; the motion-blur robustness protocol


def test_ytf_ours_aggregates_each_set_then_embeds(roots, faceagg):
    extractor = embedder_for(faceagg)
    ours = E.evaluate_protocol(roots["ytf"], extractor, set_model=faceagg, flip=False, image_size=SIZE)
    avg = E.evaluate_protocol(roots["ytf"], extractor, set_model=faceagg, set_function="mean", flip=False,
                              image_size=SIZE)
    assert (ours.details["set_function"], avg.details["set_function"]) == ("model", "mean")

    def aggregate_then_embed(members, offsets):
        faceagg.eval()
        with torch.no_grad():
            return faceagg.extractor(faceagg.aggregator(normalize(members), offsets))

    reference = E.evaluate_ytf(roots["ytf"], aggregate_then_embed,
                               transform=functools.partial(crop_face, size=SIZE))
    assert ours.metrics["accuracy"] == reference.accuracy
    assert ours.metrics["auc"] == pytest.approx(reference.auc, abs=1e-9)
    assert np.abs(ours.scores - avg.scores).max() > 1e-4


def test_blur_all_but_one():
    frames = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8)
    blur = E.BlurAllButOne(9, seed=3)
    out = blur(frames, 5)
    same = [bool(torch.equal(out[i], frames[i])) for i in range(10)]
    assert sum(same) == 1                       # 9 of 10 frames blurred
    assert torch.equal(out, blur(frames, 5))    # a function of (seed, set index)
    assert not torch.equal(out, blur(frames, 6)) and not torch.equal(out, E.BlurAllButOne(9, seed=4)(frames, 5))
    sharp = same.index(True)
    assert not torch.equal(out[sharp - 1], E.BlurAllButOne(7, seed=3)(frames, 5)[sharp - 1])   # L is the size
    single = frames[:1]
    assert torch.equal(blur(single, 0), single)
    with pytest.raises(ValueError, match="length: expected an int >= 1"):
        E.BlurAllButOne(0)


def test_ytf_blur_option(roots):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 8))
    clean = E.evaluate_protocol(roots["ytf"], net, image_size=SIZE)
    blurred = E.evaluate_protocol(f"ytf:{roots['ytf']}@blur9", net, image_size=SIZE, batch_size=1)
    again = E.evaluate_protocol(f"{roots['ytf']}@blur9", net, image_size=SIZE, batch_size=64)
    assert (clean.name, blurred.name, again.name) == ("ytf", "ytf@blur9", "ytf@blur9")
    assert np.abs(clean.scores - blurred.scores).max() > 1e-4
    np.testing.assert_allclose(blurred.scores, again.scores, rtol=0, atol=1e-6)   # independent of batching
    other_seed = E.evaluate_protocol(f"{roots['ytf']}@blur9", net, image_size=SIZE, seed=1)
    assert np.abs(other_seed.scores - blurred.scores).max() > 0
