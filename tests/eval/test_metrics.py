"""Score metrics against brute-force definitions."""
import numpy as np
import pytest
import torch

from pyfacex.eval.metrics import auc, eer, roc, roc_tar_at_far, tar_at_far


def random_case(seed, n=60, ties=False):
    rng = np.random.default_rng(seed)
    genuine = rng.random(n) < 0.4
    genuine[:2] = [True, False]
    scores = rng.normal(size=n) + 1.2 * genuine
    if ties:
        scores = np.round(scores, 1)
    return scores, genuine


def brute_points(scores, genuine):
    """(FAR, TAR) of every threshold 'accept score >= t', t over +inf and every score, high to low."""
    points = [(0.0, 0.0)]
    for t in sorted(set(scores.tolist()), reverse=True):
        accepted = scores >= t
        points.append((accepted[~genuine].mean(), accepted[genuine].mean()))
    return points


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True), (2, True)])
def test_roc_counts_every_threshold(seed, ties):
    scores, genuine = random_case(seed, ties=ties)
    curve = roc(scores, genuine)
    assert np.allclose(np.stack([curve.far, curve.tar], 1), brute_points(scores, genuine))
    assert curve.thresholds[0] == float("inf") and (curve.thresholds[1:].diff() < 0).all()


def sklearn_like_roc(scores, genuine):
    """sklearn.metrics.roc_curve with drop_intermediate=True, written as loops (insightface uses it)."""
    order = np.argsort(-scores, kind="stable")
    fps, tps, tp, fp = [], [], 0, 0
    for rank, i in enumerate(order):
        tp, fp = tp + genuine[i], fp + (not genuine[i])
        if rank == len(order) - 1 or scores[order[rank + 1]] != scores[i]:
            fps.append(fp)
            tps.append(tp)
    if len(fps) > 2:
        keep = [0] + [k for k in range(1, len(fps) - 1)
                      if fps[k + 1] - 2 * fps[k] + fps[k - 1] != 0 or tps[k + 1] - 2 * tps[k] + tps[k - 1] != 0]
        keep.append(len(fps) - 1)
        fps, tps = [fps[k] for k in keep], [tps[k] for k in keep]
    return np.array([0] + fps) / fps[-1], np.array([0] + tps) / tps[-1]


def polyline_tar(points, x):
    """TAR of the ROC polyline at FAR x; on a vertical run, its top."""
    best = 0.0
    for (f0, t0), (f1, t1) in zip(points[:-1], points[1:]):
        if f0 <= x <= f1:
            best = max(best, t1 if f1 == f0 else t0 + (x - f0) / (f1 - f0) * (t1 - t0))
    return best


@pytest.mark.parametrize("seed, ties", [(3, False), (4, True)])
def test_tar_at_far_conventions_match_their_definitions(seed, ties):
    scores, genuine = random_case(seed, ties=ties)
    fars = [0.0, 0.01, 0.05, 0.2, 0.37, 0.5, 1.0]
    points = brute_points(scores, genuine)
    at_most = [max(t for f, t in points if f <= x) for x in fars]
    assert np.allclose(tar_at_far(scores, genuine, fars, "at_most"), at_most)
    assert np.allclose(tar_at_far(scores, genuine, fars, "interpolated"), [polyline_tar(points, x) for x in fars])
    far, tar = sklearn_like_roc(scores, genuine)
    far, tar = far[::-1], tar[::-1]          # insightface: np.flipud, then min over (distance, index)
    nearest = [tar[min(zip(np.abs(far - x), range(len(far))))[1]] for x in fars]
    assert np.allclose(tar_at_far(scores, genuine, fars, "nearest"), nearest)


def test_one_roc_serves_every_convention():
    scores, genuine = random_case(6, n=200, ties=True)
    curve = roc(scores, genuine)
    assert (curve.genuine, curve.impostors) == (int(genuine.sum()), int((~genuine).sum()))
    fars = [0.0, 0.003, 0.05, 0.4]
    for convention in ("interpolated", "nearest", "at_most"):
        assert torch.equal(roc_tar_at_far(curve, fars, convention), tar_at_far(scores, genuine, fars, convention))
    dropped = roc(scores, genuine, drop_intermediate=True)
    assert torch.equal(roc_tar_at_far(dropped, fars, "nearest"), tar_at_far(scores, genuine, fars, "nearest"))
    far, tar = sklearn_like_roc(scores, genuine)
    assert np.allclose(dropped.far, far) and np.allclose(dropped.tar, tar)


def test_auc_is_the_mann_whitney_statistic_and_eer_balances_errors():
    scores, genuine = random_case(5, ties=True)
    pos, neg = scores[genuine], scores[~genuine]
    wins = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    assert auc(scores, genuine) == pytest.approx(wins)
    rate = eer(scores, genuine)
    curve = roc(scores, genuine)
    frr_at_rate = 1 - np.interp(rate, curve.far.numpy(), curve.tar.numpy())
    assert rate == pytest.approx(frr_at_rate, abs=1e-9)


def test_perfect_separation_gives_tar_one_everywhere():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.2, 0.1, -0.3])
    genuine = torch.tensor([True, True, True, False, False, False])
    for convention in ("interpolated", "nearest", "at_most"):
        assert torch.equal(tar_at_far(scores, genuine, [0.0, 1e-6, 0.1, 1.0], convention),
                           torch.ones(4, dtype=torch.float64))
    assert auc(scores, genuine) == 1.0 and eer(scores, genuine) == 0.0


@pytest.mark.parametrize("call, message", [
    (lambda: roc([0.1, float("nan")], [True, False]), "scores"),
    (lambda: roc([0.1, 0.2], [True, True]), "genuine"),
    (lambda: roc([0.1, 0.2, 0.3], [True, False]), "is_genuine"),
    (lambda: roc([0.1, 0.2], [2, 0]), "is_genuine"),
    (lambda: tar_at_far([0.1, 0.2], [True, False], [1.5]), "fars"),
    (lambda: tar_at_far([0.1, 0.2], [True, False], [0.1], "median"), "convention"),
])
def test_bad_input_names_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()
