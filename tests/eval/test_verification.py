"""The verification protocol against an independent re-implementation of insightface's, the pair-list
readers on synthetic and hand-written files in the real formats, and flip-sum embeddings."""
import json
import math

import numpy as np
import pytest
import torch

from pyfacex.data import decode_image, read_verification_bin
from pyfacex.data.synthetic import SyntheticFaceWorld
from pyfacex.data.synthetic.protocols import GROUND_TRUTH, write_cfp_fp_like, write_lfw_like
from pyfacex.data.transforms import normalize
from pyfacex.eval.verification import (
    embed,
    evaluate_bin,
    evaluate_pair_list,
    kfold_test_sets,
    read_cfp_pairs,
    read_lfw_pairs,
    verify_pairs,
)

# ----------------------------------------------------------------------------------------------------
# Oracle: insightface's calculate_roc / calculate_accuracy / calculate_val / calculate_val_far, written
# from the published algorithm with loops, with sklearn's KFold(shuffle=False) and scipy's
# interp1d(kind='slinear') done by hand.


def oracle_kfold(n, n_splits):
    """(train, test) index lists of KFold(n_splits, shuffle=False); insightface's LFold for 1 split."""
    if n_splits == 1:
        return [(list(range(n)), list(range(n)))]
    splits, start = [], 0
    for fold in range(n_splits):
        size = n // n_splits + (1 if fold < n % n_splits else 0)
        test = list(range(start, start + size))
        splits.append(([i for i in range(n) if not start <= i < start + size], test))
        start += size
    return splits


def oracle_slinear(x, y, x_new):
    """scipy interp1d(x, y, kind='slinear')(x_new): stable sort, degree-1 B-spline with knots
    [x0, x0..x_{n-1}, x_{n-1}], interval search as scipy's find_interval, de Boor for k = 1."""
    order = sorted(range(len(x)), key=lambda i: x[i])
    xs, ys = [float(x[i]) for i in order], [float(y[i]) for i in order]
    assert xs[0] <= x_new <= xs[-1]
    t = [xs[0]] + xs + [xs[-1]]
    k, n = 1, len(t) - 2
    ell = k + 1
    while x_new >= t[ell] and ell != n:
        ell += 1
    ell -= 1
    xa, xb = t[ell], t[ell + 1]
    if xb == xa:
        h0 = h1 = 0.0
    else:
        w = 1.0 / (xb - xa)
        h0, h1 = w * (xb - x_new), w * (x_new - xa)
    return 0.0 + ys[ell - 1] * h0 + ys[ell] * h1


def oracle_accuracy(threshold, dist, actual):
    predict = dist < threshold
    tp = np.sum(predict & actual)
    tn = np.sum(~predict & ~actual)
    return float(tp + tn) / dist.size


def oracle_val_far(threshold, dist, actual):
    predict = dist < threshold
    val = float(np.sum(predict & actual)) / float(np.sum(actual))
    return val, float(np.sum(predict & ~actual)) / float(np.sum(~actual))


def oracle(emb1, emb2, actual, n_folds=10, far_target=1e-3):
    """(fold accuracies, fold best thresholds, val mean, val std, far mean, fold val thresholds)."""
    emb1 = emb1 / np.linalg.norm(emb1, axis=1, keepdims=True)
    emb2 = emb2 / np.linalg.norm(emb2, axis=1, keepdims=True)
    dist = np.sum((emb1 - emb2) ** 2, 1)
    thresholds = np.arange(0, 4, 0.01)
    accuracy, best = [], []
    for train, test in oracle_kfold(len(actual), n_folds):
        acc_train = [oracle_accuracy(t, dist[train], actual[train]) for t in thresholds]
        best.append(thresholds[int(np.argmax(acc_train))])
        accuracy.append(oracle_accuracy(best[-1], dist[test], actual[test]))
    thresholds = np.arange(0, 4, 0.001)
    val, far, chosen = [], [], []
    for train, test in oracle_kfold(len(actual), n_folds):
        # calculate_val_far's FAR at all 4000 thresholds at once (a loop would dominate the test time)
        accepted = dist[train][None, :] < thresholds[:, None]
        far_train = (accepted & ~actual[train]).sum(1) / np.sum(~actual[train])
        chosen.append(oracle_slinear(far_train, thresholds, far_target) if max(far_train) >= far_target else 0.0)
        v, f = oracle_val_far(chosen[-1], dist[test], actual[test])
        val.append(v)
        far.append(f)
    return np.array(accuracy), np.array(best), np.mean(val), np.std(val), np.mean(far), np.array(chosen)


def random_pairs(seed, pairs=200, dim=8, noise=1.0):
    rng = np.random.default_rng(seed)
    same = rng.random(pairs) < 0.5
    same[:2] = [True, False]
    a = rng.normal(size=(pairs, dim))
    b = np.where(same[:, None], a, rng.normal(size=(pairs, dim))) + noise * rng.normal(size=(pairs, dim))
    return a.astype(np.float32), b.astype(np.float32), same


def check_against_oracle(result, expected):
    accuracy, best, val, val_std, far, chosen = expected
    assert result.fold_accuracies.tolist() == accuracy.tolist()
    assert result.thresholds.tolist() == best.tolist()
    assert result.accuracy == np.mean(accuracy) and result.accuracy_std == np.std(accuracy)
    assert result.fold_val_thresholds.tolist() == pytest.approx(chosen.tolist(), abs=1e-12)
    assert (result.val, result.val_std, result.far) == (val, val_std, far)


@pytest.mark.parametrize("seed, pairs, folds", [(0, 200, 10), (1, 203, 10), (2, 60, 3), (3, 40, 1)])
def test_matches_insightface_on_random_embeddings(seed, pairs, folds):
    a, b, same = random_pairs(seed, pairs)
    result = verify_pairs(torch.from_numpy(a), torch.from_numpy(b), same, folds=folds)
    check_against_oracle(result, oracle(a.astype(np.float64), b.astype(np.float64), same, folds))
    assert result.pairs == pairs and result.genuine == int(same.sum()) and result.folds == folds


@pytest.mark.parametrize("far_target", [0.0, 0.05, 0.5, 1.0])
def test_val_interpolation_matches_scipy_semantics(far_target):
    # far_target = 1: FAR reaches 1 on many thresholds, a zero-width last knot span (scipy gives 0)
    a, b, same = random_pairs(4, 120, noise=0.6)
    result = verify_pairs(a, b, same, folds=4, far_target=far_target)
    check_against_oracle(result, oracle(a.astype(np.float64), b.astype(np.float64), same, 4, far_target))
    if far_target == 1.0:
        assert result.fold_val_thresholds.tolist() == [0.0] * 4 and result.val == 0.0


def test_slinear_oracle_reproduces_scipy_on_known_points():
    # scipy: interp1d([0, 0, .5, 1, 1], [0, 1, 2, 3, 4], kind='slinear') at .25 -> 1.5, at 0 -> 1, at 1 -> 0
    x, y = [0, 0, 0.5, 1, 1], [0, 1, 2, 3, 4]
    assert [oracle_slinear(x, y, v) for v in (0.0, 0.25, 0.75, 1.0)] == [1.0, 1.5, 2.5, 0.0]


def test_val_threshold_is_zero_when_training_far_never_reaches_the_target():
    # impostors are antipodal (distance 4, never < any threshold of the grid): FAR is 0 everywhere
    same = np.array([True, False] * 10)
    a = np.tile([[1.0, 0.0]], (20, 1))
    b = np.where(same[:, None], [[0.9, 0.1]], [[-1.0, 0.0]])
    result = verify_pairs(a, b, same, folds=2, far_target=0.5)
    assert result.fold_val_thresholds.tolist() == [0.0, 0.0]
    assert result.val == 0.0 and result.far == 0.0


def test_kfold_sizes_match_sklearn():
    for n, k in [(10, 10), (23, 10), (7, 3), (5, 1)]:
        ours = [t.tolist() for t in kfold_test_sets(n, k)]
        assert ours == [test for _, test in oracle_kfold(n, k)]


def pairs_at_distances(distances):
    """Unit embeddings in the plane whose squared L2 distances are the given values (0..4)."""
    angles = np.arccos(1 - np.asarray(distances, dtype=np.float64) / 2)
    a = np.tile([[1.0, 0.0]], (len(angles), 1))
    return a, np.stack([np.cos(angles), np.sin(angles)], 1)


def test_threshold_comes_from_the_training_folds_only():
    # fold 0 separates between 0.515 and 0.705, fold 1 between 1.515 and 1.705: on its own pairs each
    # fold would be perfect, with the other fold's threshold it scores 0.5
    distances = [0.505, 0.515, 0.705, 0.715, 1.505, 1.515, 1.705, 1.715]
    same = np.array([True, True, False, False] * 2)
    a, b = pairs_at_distances(distances)
    result = verify_pairs(a, b, same, folds=2)
    assert result.thresholds.tolist() == pytest.approx([1.52, 0.52])      # first best of the other fold
    assert result.fold_accuracies.tolist() == [0.5, 0.5]
    for fold in (slice(0, 4), slice(4, 8)):
        assert verify_pairs(a[fold], b[fold], same[fold], folds=1).accuracy == 1.0


def test_same_means_distance_strictly_below_the_threshold():
    # genuine pairs at distance exactly 0, impostors exactly 2: threshold 0 accepts nothing, 0.01 is
    # the first perfect one
    same = np.array([True, False] * 10)
    a = np.tile([[1.0, 0.0]], (20, 1))
    b = np.where(same[:, None], [[1.0, 0.0]], [[0.0, 1.0]])
    result = verify_pairs(a, b, same, folds=2)
    assert result.thresholds.tolist() == [0.01, 0.01] and result.accuracy == 1.0
    # at threshold 2 the impostors (distance 2) are still rejected: 2 is perfect, 3 is not
    assert verify_pairs(a, b, same, folds=2, thresholds=[0.0, 3.0, 2.0]).thresholds.tolist() == [2.0, 2.0]


def test_fold_ids_override_the_contiguous_split():
    a, b, same = random_pairs(5, 40)
    contiguous = np.repeat(np.arange(4), 10)
    assert verify_pairs(a, b, same, folds=4).thresholds.tolist() == \
        verify_pairs(a, b, same, folds=7, fold_ids=contiguous).thresholds.tolist()
    interleaved = np.arange(40) % 2                       # pairs 0, 2, 4... form fold 0
    order = np.argsort(interleaved, kind="stable")
    result = verify_pairs(a, b, same, fold_ids=torch.from_numpy(interleaved))
    check_against_oracle(result, oracle(a[order].astype(np.float64), b[order].astype(np.float64), same[order], 2))


def test_a_fold_without_impostors_has_undefined_val():
    a, b, same = random_pairs(9, 30)
    fold_ids = np.where(same & (np.arange(30) < 8), 2, np.arange(30) % 2)      # fold 2: genuine pairs only
    with pytest.warns(UserWarning, match="fold 2 lacks genuine or impostor"):
        result = verify_pairs(a, b, same, fold_ids=fold_ids)
    assert math.isnan(result.fold_far[2]) and math.isnan(result.far) and not math.isnan(result.val)
    assert not result.fold_far[:2].isnan().any() and not math.isnan(result.accuracy)


def test_perfect_separation_gives_accuracy_one_and_tar_one():
    rng = np.random.default_rng(6)
    same = np.arange(100) % 2 == 0
    a, b = pairs_at_distances(np.where(same, rng.uniform(0, 0.5, 100), rng.uniform(2.5, 4, 100)))
    result = verify_pairs(a * 3.0, b, same)                  # scale does not matter: features are normalised
    assert result.accuracy == 1.0 and result.accuracy_std == 0.0
    assert all(tar == 1.0 for tar in result.tar_at_far.values())
    assert list(result.tar_at_far) == [1e-4, 1e-3, 1e-2, 1e-1]
    assert result.auc == 1.0 and result.eer == 0.0 and result.val == 1.0


def test_summary_names_the_tar_convention():
    a, b, same = random_pairs(7, 50)
    result = verify_pairs(a, b, same, folds=5)
    summary = json.loads(json.dumps(result.as_dict()))
    assert summary["tar_at_far_convention"] == "interpolated"
    assert summary["fold_accuracies"] == result.fold_accuracies.tolist() and summary["folds"] == 5
    assert set(summary["tar_at_far"]) == {"1e-04", "1e-03", "1e-02", "1e-01"}
    table = result.table()
    assert "interpolated" in table and f"{100 * result.accuracy:.4f}" in table


def test_bad_embeddings_and_labels_are_named():
    a, b, same = random_pairs(8, 20)
    bad = a.copy()
    bad[13, 2] = np.nan
    with pytest.raises(ValueError, match="emb_a: pair 13 .*non-finite"):
        verify_pairs(bad, b, same, folds=2)
    bad = b.copy()
    bad[4, 0] = np.inf
    with pytest.raises(ValueError, match="emb_b: pair 4 .*non-finite"):
        verify_pairs(a, bad, same, folds=2)
    bad[4] = 0
    with pytest.raises(ValueError, match="emb_b: pair 4 has a zero-norm"):
        verify_pairs(a, bad, same, folds=2)
    with pytest.raises(ValueError, match="emb_b: expected the shape"):
        verify_pairs(a, b[:-1], same, folds=2)
    with pytest.raises(ValueError, match="issame: expected one label per pair"):
        verify_pairs(a, b, same[:-1], folds=2)
    with pytest.raises(ValueError, match="folds: 10 folds need at least 10 pairs, got 5"):
        verify_pairs(a[:5], b[:5], same[:5])
    with pytest.raises(ValueError, match="no pairs"):
        verify_pairs(np.zeros((0, 8)), np.zeros((0, 8)), [])
    with pytest.raises(ValueError, match="issame: verification needs genuine and impostor"):
        verify_pairs(a, b, np.ones(20, dtype=bool), folds=2)
    with pytest.raises(ValueError, match="fold_ids: expected 20 integer"):
        verify_pairs(a, b, same, fold_ids=np.zeros(19, dtype=np.int64))
    with pytest.raises(ValueError, match="val_thresholds: the grid's smallest training FAR"):
        verify_pairs(a, b, same, folds=2, val_thresholds=[3.9, 3.95])
    with pytest.raises(ValueError, match="far_target"):
        verify_pairs(a, b, same, folds=2, far_target=1.5)


# ----------------------------------------------------------------------------------------------------
# Embeddings


class TinyNet(torch.nn.Module):
    """Not flip-invariant, with BatchNorm and Dropout so that train mode would change the output."""

    def __init__(self, size=16, dim=6):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.drop = torch.nn.Dropout(0.5)
        self.fc = torch.nn.Linear(4 * size * size, dim)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1))


@pytest.fixture
def net():
    torch.manual_seed(0)
    model = TinyNet()
    model.bn.running_mean.uniform_(-0.5, 0.5)
    return model


def test_flip_sum_is_the_sum_of_two_forward_passes(net):
    images = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    net.train()
    features = embed(net, images, batch_size=3)
    assert net.training                                              # mode restored
    net.eval()
    with torch.no_grad():
        plain = net(normalize(images))
        mirrored = net(normalize(images.flip(-1)))
    assert features.dtype == torch.float32 and features.shape == (10, 6)
    assert torch.allclose(features, plain + mirrored, atol=1e-5)
    assert not torch.allclose(features, 2 * plain, atol=1e-3)        # the mirror really is another input
    assert torch.allclose(embed(net, images, flip=False), plain, atol=1e-6)
    assert torch.equal(embed(net, iter(images.split(4))), embed(net, images, batch_size=4))
    assert embed(net, images[:0]).shape == (0, 0)


def test_embed_rejects_float_batches_and_bad_model_output(net):
    with pytest.raises(ValueError, match="images: expected uint8 batches"):
        embed(net, [torch.zeros(2, 3, 16, 16)])
    with pytest.raises(ValueError, match=r"model: expected \(2, d\)"):
        embed(torch.nn.Flatten(0), torch.zeros(2, 3, 16, 16, dtype=torch.uint8))


# ----------------------------------------------------------------------------------------------------
# Files: synthetic protocols in the real formats


@pytest.fixture(scope="module")
def protocols(tmp_path_factory):
    world = SyntheticFaceWorld(seed=0, size=16)
    base = tmp_path_factory.mktemp("verification")
    lfw = write_lfw_like(world, base / "lfw", folds=2, pairs_per_fold=3, identities_per_fold=3,
                         images_per_identity=2, progress=False)
    cfp = write_cfp_fp_like(world, base / "cfp", folds=2, pairs_per_fold=3, identities_per_fold=2,
                            frontal_per_identity=3, profile_per_identity=2, progress=False)
    return {"lfw": lfw, "cfp": cfp}


def identity_of(root, path):
    return json.loads((root / GROUND_TRUTH).read_text())["images"][path.relative_to(root).as_posix()]["identity"]


def check_against_bin(root, pair_list, bin_name):
    """Pair p of the list shows the images of pair p of the .bin, and its label is the ground truth."""
    images, issame = read_verification_bin(root / bin_name)
    assert torch.equal(issame, pair_list.issame)
    for p, (path_a, path_b) in enumerate(zip(pair_list.paths_a, pair_list.paths_b)):
        assert torch.equal(decode_image(path_a.read_bytes()), images[2 * p])
        assert torch.equal(decode_image(path_b.read_bytes()), images[2 * p + 1])
        assert (identity_of(root, path_a) == identity_of(root, path_b)) == bool(issame[p])


def test_read_lfw_pairs_on_synthetic_lfw(protocols):
    root = protocols["lfw"]
    pair_list = read_lfw_pairs(root / "pairs.txt")
    assert pair_list.issame.tolist() == [True] * 3 + [False] * 3 + [True] * 3 + [False] * 3
    assert pair_list.fold_ids.tolist() == [0] * 6 + [1] * 6
    assert all(p.parent.parent == root / "lfw" for p in pair_list.paths_a + pair_list.paths_b)
    check_against_bin(root, pair_list, "lfw.bin")


@pytest.mark.parametrize("protocol, view_b", [("FP", "profile"), ("FF", "frontal")])
def test_read_cfp_pairs_on_synthetic_cfp(protocols, protocol, view_b):
    root = protocols["cfp"]
    pair_list = read_cfp_pairs(root, protocol)
    assert pair_list.fold_ids.tolist() == [0] * 6 + [1] * 6
    assert all(p.parent.name == "frontal" for p in pair_list.paths_a)
    assert all(p.parent.name == view_b for p in pair_list.paths_b)
    check_against_bin(root, pair_list, f"cfp_{protocol.lower()}.bin")


def test_evaluate_bin_equals_evaluate_pair_list(protocols, net):
    root = protocols["lfw"]
    from_bin = evaluate_bin(net, root / "lfw.bin", folds=2)
    from_list = evaluate_pair_list(net, read_lfw_pairs(root / "pairs.txt"), batch_size=5)
    assert from_bin.fold_accuracies.tolist() == from_list.fold_accuracies.tolist()
    assert from_bin.thresholds.tolist() == from_list.thresholds.tolist()
    assert from_bin.auc == pytest.approx(from_list.auc)


# ----------------------------------------------------------------------------------------------------
# Files: hand-written in the real formats


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_read_lfw_pairs_hand_written(tmp_path):
    for name, k in [("Aaron_Peirsol", 1), ("Aaron_Peirsol", 2), ("Abel_Pacheco", 1), ("Zico", 3)]:
        touch(tmp_path / "faces" / name / f"{name}_{k:04d}.jpg")
    (tmp_path / "pairs.txt").write_text("2\t1\nAaron_Peirsol\t1\t2\nAaron_Peirsol\t1\tZico\t3\n"
                                        "Abel_Pacheco\t1\t1\nAbel_Pacheco\t1\tZico\t3\n\n")
    pair_list = read_lfw_pairs(tmp_path / "pairs.txt", tmp_path / "faces")
    assert pair_list.issame.tolist() == [True, False, True, False] and pair_list.fold_ids.tolist() == [0, 0, 1, 1]
    assert pair_list.paths_b[1] == tmp_path / "faces/Zico/Zico_0003.jpg"
    # View 1 (pairsDevTest.txt): the header is one count, one fold
    (tmp_path / "dev.txt").write_text("1\nAaron_Peirsol\t1\t2\nAbel_Pacheco\t1\tZico\t3\n")
    assert read_lfw_pairs(tmp_path / "dev.txt", tmp_path / "faces").fold_ids.tolist() == [0, 0]


@pytest.mark.parametrize("text, error, match", [
    ("1\t1\nAaron_Peirsol\t1\t5\nAbel_Pacheco\t1\tZico\t3\n", FileNotFoundError, r"pairs.txt line 2: image .*_0005"),
    ("1\t1\nAbel_Pacheco\t1\tZico\t3\nAaron_Peirsol\t1\t2\n", ValueError, r"pairs.txt line 2: expected a matched"),
    ("2\t1\nAaron_Peirsol\t1\t2\nAbel_Pacheco\t1\tZico\t3\n", ValueError, r"announces 2 folds .* has 2 pair lines"),
    ("10 300 7\n", ValueError, r"pairs.txt line 1: expected a header"),
    ("1\t1\nAaron_Peirsol\tone\t2\nAbel_Pacheco\t1\tZico\t3\n", ValueError, r"line 2: expected an image number"),
    ("", ValueError, r"empty pair list"),
])
def test_read_lfw_pairs_bad_files(tmp_path, text, error, match):
    for name, k in [("Aaron_Peirsol", 1), ("Aaron_Peirsol", 2), ("Abel_Pacheco", 1), ("Zico", 3)]:
        touch(tmp_path / "lfw" / name / f"{name}_{k:04d}.jpg")
    (tmp_path / "pairs.txt").write_text(text)
    with pytest.raises(error, match=match):
        read_lfw_pairs(tmp_path / "pairs.txt")


def write_cfp(root, same_fp="1,1\r\n3,2\r\n", diff_fp="1,2\r\n"):
    """Two people, two frontal and one profile image each; CRLF lines as in the release."""
    frontal = [f"../Data/Images/{p:03d}/frontal/{k:02d}.jpg" for p in (1, 2) for k in (1, 2)]
    profile = [f"../Data/Images/{p:03d}/profile/01.jpg" for p in (1, 2)]
    for path in frontal + profile:
        touch(root / "Protocol" / path)
    (root / "Protocol/Pair_list_F.txt").write_text("".join(f"{i} {p}\r\n" for i, p in enumerate(frontal, 1)))
    (root / "Protocol/Pair_list_P.txt").write_text("".join(f"{i} {p}\r\n" for i, p in enumerate(profile, 1)))
    for fold in ("01", "02"):
        for protocol, same, diff in (("FP", same_fp, diff_fp), ("FF", "1,2\n", "2,3\n")):
            (root / f"Protocol/Split/{protocol}/{fold}").mkdir(parents=True, exist_ok=True)
            (root / f"Protocol/Split/{protocol}/{fold}/same.txt").write_text(same)
            (root / f"Protocol/Split/{protocol}/{fold}/diff.txt").write_text(diff)


def test_read_cfp_pairs_hand_written(tmp_path):
    write_cfp(tmp_path)
    fp = read_cfp_pairs(tmp_path, "FP")
    assert fp.issame.tolist() == [True, True, False] * 2 and fp.fold_ids.tolist() == [0, 0, 0, 1, 1, 1]
    assert fp.paths_a[2] == tmp_path / "Data/Images/001/frontal/01.jpg"
    assert fp.paths_b[2] == tmp_path / "Data/Images/002/profile/01.jpg"
    ff = read_cfp_pairs(tmp_path, "FF")
    assert ff.paths_b[1] == tmp_path / "Data/Images/002/frontal/01.jpg"


def test_read_cfp_pairs_names_unknown_indices(tmp_path):
    write_cfp(tmp_path, diff_fp="1,2\n4,3\n")
    with pytest.raises(ValueError, match=r"Split/FP/01/diff.txt line 2: index 3 is not in Pair_list_P.txt"):
        read_cfp_pairs(tmp_path, "FP")
    with pytest.raises(ValueError, match="protocol: expected 'FP' or 'FF'"):
        read_cfp_pairs(tmp_path, "PP")
    (tmp_path / "Data/Images/002/profile/01.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"Pair_list_P.txt line 2: image"):
        read_cfp_pairs(tmp_path, "FP")


def test_evaluate_pair_list_reports_an_undecodable_image(tmp_path, net):
    write_cfp(tmp_path)
    with pytest.raises(ValueError, match=r"frontal/01.jpg.*(empty|decode)"):
        evaluate_pair_list(net, read_cfp_pairs(tmp_path, "FP"))
