"""Rank-N identification against brute-force definitions and hand-built galleries."""
import math

import numpy as np
import pytest
import torch

import pyfacex.eval.ranking as ident
from pyfacex.eval.ranking import identification, identification_from_scores

# ----------------------------------------------------------------------------------------------------
# brute force: the full score matrix and Python loops over the module docstring's definitions


def brute_force(scores, probe_labels, gallery_labels, ranks, fpirs):
    scores = np.asarray(scores, dtype=np.float64)
    rank, ap, top, mated = [], [], [], []
    for row, label in zip(scores, probe_labels):
        top.append(max(row))
        mates = [j for j, g in enumerate(gallery_labels) if g == label]
        mated.append(bool(mates))
        if not mates:
            continue
        best = max(row[j] for j in mates)
        rank.append(1 + sum(1 for j, g in enumerate(gallery_labels) if g != label and row[j] >= best))
        precisions = []
        for j in mates:
            above = [i for i in range(len(row)) if row[i] >= row[j]]
            precisions.append(sum(1 for i in above if gallery_labels[i] == label) / len(above))
        ap.append(sum(precisions) / len(precisions))
    cmc = [sum(1 for r in rank if r <= k) / len(rank) for k in range(1, max(ranks) + 1)]
    non_mated = [t for t, m in zip(top, mated) if not m]
    rank_one = [t for t, r in zip([t for t, m in zip(top, mated) if m], rank) if r == 1]
    tpir, thresholds = {}, {}
    for f in fpirs:
        # every threshold that can matter: each top score, the float just above it, and -inf
        candidates = [-math.inf] + [c for t in top for c in (t, math.nextafter(t, math.inf))]
        allowed = [t for t in candidates if sum(1 for x in non_mated if x >= t) <= f * len(non_mated) + 1e-9]
        thresholds[f] = min(allowed)
        tpir[f] = sum(1 for s in rank_one if s >= thresholds[f]) / len(rank)
    return dict(cmc=cmc, map=sum(ap) / len(ap), tpir=tpir, thresholds=thresholds, rank=rank)


def random_case(seed, probes=40, gallery=30, identities=12, d=6):
    rng = np.random.default_rng(seed)
    gallery_labels = rng.integers(0, identities, gallery)          # several items per identity
    probe_labels = rng.integers(0, identities + 6, probes)         # labels >= identities: non-mated
    probe_labels[:2] = [gallery_labels[0], identities + 5]       # at least one of each kind
    centres = rng.normal(size=(identities + 6, d))
    g = centres[gallery_labels] + 0.9 * rng.normal(size=(gallery, d))
    p = centres[probe_labels] + 0.9 * rng.normal(size=(probes, d))
    return (torch.tensor(p, dtype=torch.float32), torch.tensor(probe_labels), torch.tensor(g, dtype=torch.float32),
            torch.tensor(gallery_labels))


def cosine(p, g):
    return torch.nn.functional.normalize(p) @ torch.nn.functional.normalize(g).T


def assert_matches(result, expected, ranks):
    mated = result.first_mate_rank > 0
    assert result.first_mate_rank[mated].tolist() == expected["rank"]
    assert np.allclose(result.cmc.numpy(), expected["cmc"], rtol=0, atol=1e-12)
    assert result.rank == {k: pytest.approx(expected["cmc"][k - 1], abs=1e-12) for k in ranks}
    assert result.mean_average_precision == pytest.approx(expected["map"], abs=1e-12)
    assert result.tpir == pytest.approx(expected["tpir"], abs=1e-12)
    assert result.thresholds == pytest.approx(expected["thresholds"], abs=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_features_against_brute_force(seed, monkeypatch):
    # The thresholds are top scores (and the floats just above them), so the oracle must see the very
    # scores the implementation ranked: its chunked float32 GEMM may differ from one unchunked GEMM by
    # a few ulps, and by different ulps on different BLAS kernels and CPUs.
    p, pl, g, gl = random_case(seed)
    ranks, fpirs = (1, 3, 5), (0.0, 0.05, 0.1, 0.25, 1.0)
    blocks = []
    original = ident._score_block
    monkeypatch.setattr(ident, "_score_block", lambda s, *a: blocks.append(s.clone()) or original(s, *a))
    result = identification(p, pl, g, gl, ranks=ranks, fpirs=fpirs, chunk=7)
    used = torch.cat(blocks)
    torch.testing.assert_close(used, cosine(p, g), rtol=0, atol=1e-6)  # they are the cosines, to rounding
    expected = brute_force(used, pl.tolist(), gl.tolist(), ranks, fpirs)
    assert_matches(result, expected, ranks)
    assert result.num_mated == len(expected["rank"]) and result.num_mated + result.num_non_mated == len(p)


@pytest.mark.parametrize("seed", [3, 4])
def test_tied_scores_against_brute_force(seed):
    # coarse integer scores: many ties between mates, non-mates and non-mated top scores
    rng = np.random.default_rng(seed)
    scores = torch.tensor(rng.integers(0, 5, (50, 20)), dtype=torch.float64)
    gl, pl = rng.integers(0, 6, 20), rng.integers(0, 9, 50)
    pl[:2] = [gl[0], 100]
    ranks, fpirs = (1, 2, 4), (0.0, 0.1, 0.3, 0.5)
    result = identification_from_scores(scores, pl, gl, ranks=ranks, fpirs=fpirs, chunk=8)
    assert_matches(result, brute_force(scores, pl.tolist(), gl.tolist(), ranks, fpirs), ranks)


def test_average_precision_is_the_ranked_list_ap_without_ties():
    # the re-id / TinyFace AP: walk the list sorted by score, precision at each mate's position
    p, pl, g, gl = random_case(5)
    scores = cosine(p, g)
    result = identification(p, pl, g, gl)
    aps = []
    for row, label in zip(scores, pl):
        hits = (gl[row.argsort(descending=True)] == label).tolist()
        if any(hits):
            found = [i for i, h in enumerate(hits) if h]
            aps.append(np.mean([(k + 1) / (i + 1) for k, i in enumerate(found)]))
    assert result.mean_average_precision == pytest.approx(np.mean(aps), abs=1e-9)


# ----------------------------------------------------------------------------------------------------
# known answers


def hand_built():
    gallery_labels = [10, 10, 20, 30]
    scores = [[0.9, 0.1, 0.5, 0.2],     # label 10: rank 1, mates at positions 1 and 4 -> AP (1 + 2/4) / 2
              [0.8, 0.7, 0.6, 0.1],     # label 20: rank 3, AP 1/3
              [0.1, 0.2, 0.3, 0.4],     # label 30: rank 1, AP 1
              [0.65, 0.0, 0.0, 0.0],    # non-mated, top 0.65
              [0.0, 0.95, 0.0, 0.0],    # non-mated, top 0.95
              [0.0, 0.0, 0.3, 0.0]]     # non-mated, top 0.3
    return torch.tensor(scores, dtype=torch.float64), [10, 20, 30, 99, 98, 97], gallery_labels


def test_hand_built_gallery():
    scores, pl, gl = hand_built()
    fpirs = (0.0, 1 / 3, 0.5, 2 / 3, 1.0)
    result = identification_from_scores(scores, pl, gl, ranks=(1, 2, 3), fpirs=fpirs)
    assert result.first_mate_rank.tolist() == [1, 3, 1, 0, 0, 0]
    assert result.cmc.tolist() == pytest.approx([2 / 3, 2 / 3, 1.0])
    assert result.rank == pytest.approx({1: 2 / 3, 2: 2 / 3, 3: 1.0})
    assert result.mean_average_precision == pytest.approx((0.75 + 1 / 3 + 1) / 3)
    assert (result.num_mated, result.num_non_mated) == (3, 3)
    # non-mated tops 0.95 > 0.65 > 0.3; rank-1 mates score 0.9 and 0.4
    assert result.tpir == pytest.approx({0.0: 0.0, 1 / 3: 1 / 3, 0.5: 1 / 3, 2 / 3: 2 / 3, 1.0: 2 / 3})
    assert result.thresholds[1 / 3] == math.nextafter(0.65, 1) and result.thresholds[1.0] == -math.inf
    assert result.thresholds[0.0] == math.nextafter(0.95, 1)


def test_ties_count_against_the_probe():
    # a non-mate tied with both mates: first mate at rank 2, every mate has precision 2/3
    result = identification_from_scores([[0.5, 0.5, 0.5, 0.0]], [10], [10, 10, 20, 30])
    assert result.first_mate_rank.tolist() == [2]
    assert result.mean_average_precision == pytest.approx(2 / 3)
    # tied non-mated top scores at the cut: FPIR 1/2 admits one false alarm, but no threshold passes
    # exactly one of two equal scores, so both are rejected
    tied = identification_from_scores([[0.9, 0.0], [0.5, 0.0], [0.0, 0.5]], [1, 7, 8], [1, 2], fpirs=(0.5,))
    assert tied.thresholds[0.5] == math.nextafter(0.5, 1) and tied.tpir[0.5] == 1.0
    # a mate scoring exactly the threshold passes (score >= t)
    edge = identification_from_scores(torch.tensor([[math.nextafter(0.5, 1), 0.0], [0.5, 0.0]], dtype=torch.float64),
                                      [1, 7], [1, 2], fpirs=(0.0,))
    assert edge.tpir[0.0] == 1.0


def test_fpir_admits_floor_of_fpir_times_non_mated():
    # 100 non-mated probes with tops 0.00 .. 0.99 and one mated probe per top: 0.29 admits 29 false alarms
    # (0.29 * 100 is 28.999999999999996 in floating point)
    tops = torch.arange(100, dtype=torch.float64) / 100
    scores = torch.cat([torch.stack([tops, torch.zeros(100)], 1), torch.stack([torch.zeros(100), tops], 1)])
    labels = [9] * 100 + [2] * 100
    result = identification_from_scores(scores, labels, [1, 2], fpirs=(0.29, 0.5, 0.0))
    assert result.thresholds[0.29] == math.nextafter(0.70, 1)        # 0.71 .. 0.99 pass: 29
    assert result.tpir == pytest.approx({0.29: 0.29, 0.5: 0.5, 0.0: 0.0})


def test_features_are_normalised_and_cosine_scored():
    # 2-d features at known angles; scaling a feature must not change anything
    angle = torch.tensor([0.0, 0.3, 1.2, 2.0])
    gallery = torch.stack([angle.cos(), angle.sin()], 1) * torch.tensor([[1.0], [5.0], [0.1], [2.0]])
    probe = torch.tensor([[math.cos(0.25), math.sin(0.25)], [math.cos(1.9), math.sin(1.9)],
                          [math.cos(-0.1), math.sin(-0.1)]]) * 3
    result = identification(probe, [1, 0, 9], gallery, [0, 1, 2, 3], ranks=(1, 2, 3, 4))
    # probe 0 (0.25 rad) is nearest item 1 (0.3): rank 1; probe 1 (1.9) sees 2.0, 1.2, 0.3, 0.0 -> rank 4
    assert result.first_mate_rank.tolist() == [1, 4, 0]
    assert result.cmc.tolist() == pytest.approx([0.5, 0.5, 0.5, 1.0])


# ----------------------------------------------------------------------------------------------------
# chunking and degenerate inputs


def test_chunked_equals_unchunked():
    p, pl, g, gl = random_case(6, probes=53)
    whole = identification_from_scores(cosine(p, g), pl, gl, chunk=10_000)
    for chunk in (1, 4, 53):
        part = identification(p, pl, g, gl, chunk=chunk)
        assert torch.equal(part.first_mate_rank, whole.first_mate_rank)
        assert torch.equal(part.cmc, whole.cmc) and part.tpir == whole.tpir
        assert part.mean_average_precision == pytest.approx(whole.mean_average_precision, abs=1e-12)


def test_blocks_never_exceed_chunk(monkeypatch):
    p, pl, g, gl = random_case(7, probes=23)
    seen = []
    original = ident._score_block
    monkeypatch.setattr(ident, "_score_block", lambda s, *a: seen.append(tuple(s.shape)) or original(s, *a))
    identification(p, pl, g, gl, chunk=5)
    assert seen == [(5, 30)] * 4 + [(3, 30)]


def test_no_non_mated_probes_leaves_tpir_undefined():
    p, pl, g, gl = random_case(8)
    keep = torch.isin(pl, gl)
    result = identification(p[keep], pl[keep], g, gl)
    assert result.num_non_mated == 0 and all(math.isnan(v) for v in result.tpir.values())
    assert all(math.isnan(v) for v in result.thresholds.values()) and not math.isnan(result.rank[1])
    assert result.as_dict()["tpir"] == {"0.01": None, "0.1": None}


def test_empty_probes_and_all_non_mated():
    g, gl = torch.randn(4, 3), [0, 1, 2, 3]
    empty = identification(torch.zeros(0, 3), [], g, gl)
    assert (empty.num_mated, empty.num_non_mated) == (0, 0) and empty.cmc.isnan().all()
    assert empty.first_mate_rank.shape == (0,) and math.isnan(empty.mean_average_precision)
    strangers = identification(torch.randn(5, 3), [9] * 5, g, gl, fpirs=(0.2,))
    assert strangers.num_non_mated == 5 and math.isnan(strangers.tpir[0.2])
    assert strangers.thresholds[0.2] > strangers.thresholds[0.2] - 1     # defined (finite)


def test_table_and_dict():
    scores, pl, gl = hand_built()
    result = identification_from_scores(scores, pl, gl, ranks=(1, 3), fpirs=(1 / 3,))
    lines = result.table().splitlines()
    assert "3 mated, 3 non-mated" in lines[0]
    assert lines[1].split() == ["rank-1", "rank-3", "mAP", "TPIR@FPIR=0.333333"]
    assert lines[2].split() == ["66.67", "100.00", "69.44", "33.33"]
    d = result.as_dict()
    assert d["rank"] == pytest.approx({"1": 2 / 3, "3": 1.0}) and d["num_mated"] == 3 and len(d["cmc"]) == 3


@pytest.mark.parametrize("where, value, message", [
    ("probe", math.nan, "probe: feature 2 holds NaN"),
    ("gallery", math.inf, "gallery: feature 2 holds NaN or inf"),
    ("probe", 0.0, "probe: feature 2 is all zeros"),
    ("gallery", 0.0, "gallery: feature 2 is all zeros"),
])
def test_bad_features_name_the_index(where, value, message):
    p, pl, g, gl = random_case(9)
    (p if where == "probe" else g)[2] = value
    with pytest.raises(ValueError, match=message):
        identification(p, pl, g, gl)


def test_bad_arguments():
    p, pl, g, gl = random_case(10)
    with pytest.raises(ValueError, match=r"probe_labels: expected one label per probe feature \(40\), got 39"):
        identification(p, pl[:-1], g, gl)
    with pytest.raises(ValueError, match="gallery_labels: expected one label per gallery feature"):
        identification(p, pl, g, gl[:3])
    with pytest.raises(ValueError, match="gallery: expected at least one gallery item"):
        identification(p, pl, g[:0], gl[:0])
    with pytest.raises(ValueError, match="gallery: expected features of the probes' dimension 6, got 5"):
        identification(p, pl, g[:, :5], gl)
    with pytest.raises(ValueError, match="fpirs: expected numbers in"):
        identification(p, pl, g, gl, fpirs=(1.5,))
    with pytest.raises(ValueError, match="ranks: expected an int >= 1"):
        identification(p, pl, g, gl, ranks=(0, 1))
    with pytest.raises(ValueError, match=r"scores: expected finite values, scores\[1, 2\]"):
        identification_from_scores(torch.tensor([[0.0, 0, 0], [0, 0, math.nan]]), [0, 1], [0, 1, 2])
    with pytest.raises(TypeError, match="probe: expected floating-point"):
        identification(torch.ones(3, 2, dtype=torch.int64), [0, 1, 2], g[:, :2], gl)
