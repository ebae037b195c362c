"""IJB templates: readers (real formats and write_ijb_like), pooling, 1:1 chunked scoring, 1:N, end to end."""
import json
import math

import numpy as np
import pytest
import torch

import pyfacex.eval as E
from pyfacex.align import five_points, norm_crop
from pyfacex.data.codec import decode_image
from pyfacex.data.landmarks import align_face
from pyfacex.data.synthetic import SyntheticFaceWorld
from pyfacex.data.synthetic.protocols import write_ijb_like, write_ijba_like
from pyfacex.eval import ijb
from pyfacex.eval.metrics import tar_at_far
from pyfacex.eval.video import crop_face

IJBA_HEADER = ("TEMPLATE_ID,SUBJECT_ID,FILE,MEDIA_ID,SIGHTING_ID,FRAME,FACE_X,FACE_Y,FACE_WIDTH,FACE_HEIGHT,"
               "RIGHT_EYE_X,RIGHT_EYE_Y,LEFT_EYE_X,LEFT_EYE_Y,NOSE_BASE_X,NOSE_BASE_Y,FACE_YAW,FOREHEAD_VISIBLE,"
               "EYES_VISIBLE,NOSE_MOUTH_VISIBLE,INDOOR,GENDER,SKIN_TONE,AGE")


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------------------------------
# readers, real formats


def test_face_tid_mid_and_5pts(tmp_path):
    listing = ijb.read_face_tid_mid(write(tmp_path / "ijbc_face_tid_mid.txt",
                                          "1.jpg 1 69544\n2.jpg 1 69544\n3.jpg 7 12\n"))
    assert listing.images == ["1.jpg", "2.jpg", "3.jpg"]
    assert listing.template_ids.tolist() == [1, 1, 7] and listing.media_ids.tolist() == [69544, 69544, 12]
    points = ijb.read_name_5pts_score(write(tmp_path / "p.txt", "1.jpg 1 2 3 4 5 6 7 8 9 10 0.5\n"
                                                               "2.jpg 0 0 0 0 0 0 0 0 0 0.25 0.875\n"))
    assert points.points.shape == (2, 5, 2) and points.points[0, 4].tolist() == [9.0, 10.0]
    assert points.scores.tolist() == [0.5, 0.875]


def test_template_pairs_fast_path_and_errors(tmp_path):
    pairs = ijb.read_template_pairs(write(tmp_path / "pairs.txt", "1 11065 1\n1 11066 0\n2 3 0\n"))
    assert pairs.pairs.tolist() == [[1, 11065], [1, 11066], [2, 3]] and pairs.labels.tolist() == [True, False, False]
    assert len(ijb.read_template_pairs(write(tmp_path / "empty.txt", ""))) == 0
    with pytest.raises(ValueError, match=r"bad\.txt:3: expected label 0 or 1, got 2"):
        ijb.read_template_pairs(write(tmp_path / "bad.txt", "1 2 1\n1 3 0\n1 4 2\n"))
    with pytest.raises(ValueError, match=r"bad2\.txt:2: expected an integer"):
        ijb.read_template_pairs(write(tmp_path / "bad2.txt", "1 2 1\n1 x 0\n"))
    with pytest.raises(ValueError, match=r"bad3\.txt:1: expected"):
        ijb.read_template_pairs(write(tmp_path / "bad3.txt", "1 2\n"))
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        ijb.read_template_pairs(tmp_path / "missing.txt")


def test_line_errors_of_meta_files(tmp_path):
    with pytest.raises(ValueError, match=r"tid\.txt:2: expected '<image> <template id> <media id>'"):
        ijb.read_face_tid_mid(write(tmp_path / "tid.txt", "1.jpg 1 1\n2.jpg 1\n"))
    with pytest.raises(ValueError, match=r"tid2\.txt:1: expected an integer media id"):
        ijb.read_face_tid_mid(write(tmp_path / "tid2.txt", "1.jpg 1 a\n"))
    with pytest.raises(ValueError, match=r"pts\.txt:1: expected .* \(12 fields\)"):
        ijb.read_name_5pts_score(write(tmp_path / "pts.txt", "1.jpg 1 2 3\n"))
    with pytest.raises(ValueError, match=r"pts2\.txt:1: expected finite"):
        ijb.read_name_5pts_score(write(tmp_path / "pts2.txt", "1.jpg 1 2 3 4 5 6 7 8 9 10 nan\n"))


def test_one_to_n_csv(tmp_path):
    header = "TEMPLATE_ID,SUBJECT_ID,FILENAME,SIGHTING_ID,FACE_X,FACE_Y,FACE_WIDTH,FACE_HEIGHT\n"
    gallery = ijb.read_template_subjects(write(tmp_path / "ijbc_1N_gallery_G1.csv", header +
                                               "9,4,img/1.jpg,1,0,0,10,10\n9,4,img/2.jpg,2,0,0,10,10\n"
                                               "3,7,frames/5.png,3,0,0,10,10\n"))
    assert gallery.template_ids.tolist() == [3, 9] and gallery.subject_ids.tolist() == [7, 4]
    assert gallery.where(9) == f"{tmp_path / 'ijbc_1N_gallery_G1.csv'}:2"
    with pytest.raises(ValueError, match=r"g2\.csv:4: template 9 is listed with subject 5 and with subject 4"):
        ijb.read_template_subjects(write(tmp_path / "g2.csv", header + "9,4,a,1,0,0,1,1\n3,7,b,2,0,0,1,1\n"
                                                                       "9,5,c,3,0,0,1,1\n"))
    with pytest.raises(ValueError, match=r"g3\.csv:1: .*SUBJECT_ID missing"):
        ijb.read_template_subjects(write(tmp_path / "g3.csv", "TEMPLATE_ID,FILENAME\n1,a\n"))


def test_ijba_split(tmp_path):
    split = tmp_path / "IJB-A_11_sets" / "split3"
    rows = ["187,101,img/533.JPG,533,22238,,477.3,213,1285,1492.6,1393.6,953.3,1646.6,992.2,1715.5,1180.5,,"
            "1,1,1,1,1,1,4",
            "187,101,frame/28337_00300.png,28337,8484,300,167.5,36.5,135.8,192.2,210.4,153.1,259.6,152.2,235.2,186.9,"
            "-3.08,1,1,1,1,1,1,4",
            "226,102,img/643.jpg,643,23585,,428,97,146,178,538.8,187.8,,,562.7,218.4,,0,1,1,1,1,3,",
            "273,101,img/5530.jpg,5530,25171,,732.1,562,235.5,275.8,820.1,691.6,885,704.7,840.9,735.6,-3.0,"
            "1,1,1,1,1,3,4"]
    write(split / "train_3.csv", IJBA_HEADER + "\n" + rows[0] + "\n")
    write(split / "verify_metadata_3.csv", IJBA_HEADER + "\n" + "\n".join(rows) + "\n")
    write(split / "verify_comparisons_3.csv", "187,226\n187,273\n226,273\n")
    data = ijb.read_ijba_split(tmp_path / "IJB-A_11_sets", 3)
    assert data.metadata.files[1] == "frame/28337_00300.png"
    assert data.metadata.media_ids.tolist() == [533, 28337, 643, 5530]
    assert data.metadata.sighting_ids.tolist() == [22238, 8484, 23585, 25171]
    assert data.pairs.pairs.tolist() == [[187, 226], [187, 273], [226, 273]]
    assert data.pairs.labels.tolist() == [False, True, False]  # 187 and 273 are both subject 101
    assert len(data.train.files) == 1
    # the face boxes (FACE_X, FACE_Y top-left, FACE_WIDTH, FACE_HEIGHT) in the real file's columns
    torch.testing.assert_close(data.metadata.boxes[:2], torch.tensor([[477.3, 213, 1285, 1492.6],
                                                                      [167.5, 36.5, 135.8, 192.2]]))
    # the three annotated landmarks (right eye, left eye, nose base); the release leaves some blank
    torch.testing.assert_close(data.metadata.landmarks[1], torch.tensor([[210.4, 153.1], [259.6, 152.2],
                                                                         [235.2, 186.9]]))
    assert data.metadata.landmarks.shape == (4, 3, 2)
    assert torch.isnan(data.metadata.landmarks[2, 1]).all() and torch.isfinite(data.metadata.landmarks[2, ::2]).all()
    no_boxes = write(tmp_path / "plain.csv", "TEMPLATE_ID,SUBJECT_ID,FILE,MEDIA_ID,SIGHTING_ID\n1,2,a.jpg,3,4\n")
    assert ijb.read_ijba_metadata(no_boxes).boxes is None and ijb.read_ijba_metadata(no_boxes).landmarks is None
    bad_point = write(tmp_path / "bad_point.csv", IJBA_HEADER + "\n" + rows[0].replace(",953.3,", ",eye,") + "\n")
    with pytest.raises(ValueError, match=r"bad_point\.csv:2: expected RIGHT_EYE_Y to be a finite number or blank, "
                                         r"got 'eye'"):
        ijb.read_ijba_metadata(bad_point)
    bad = write(tmp_path / "bad.csv", IJBA_HEADER + "\n" + rows[0].replace(",1285,", ",0,") + "\n")
    with pytest.raises(ValueError, match=r"bad\.csv:2: expected a face box .* positive width"):
        ijb.read_ijba_metadata(bad)
    write(split / "verify_comparisons_3.csv", "187,226\n187,999\n")
    with pytest.raises(ValueError, match=r"verify_comparisons_3\.csv:2: template 999 is not in"):
        ijb.read_ijba_split(tmp_path / "IJB-A_11_sets", 3)
    with pytest.raises(ValueError, match="split: expected an int in 1..10"):
        ijb.read_ijba_split(tmp_path, 11)


def test_ijba_aligns_by_the_annotated_eyes_and_nose(tmp_path):
    world = SyntheticFaceWorld(seed=0, size=32)
    root = write_ijba_like(world, tmp_path / "ijba", subjects=3, splits=1, test_subjects=2, templates_per_subject=2,
                           stills=(1, 2), videos=(0, 0), impostors_per_template=1, progress=False)
    csv = root / "IJB-A_11_sets/split1/verify_metadata_1.csv"
    lines = csv.read_text().splitlines()   # blank one row's left eye, as the release does on some rows
    header, fields = lines[0].split(","), lines[1].split(",")
    for column in ("LEFT_EYE_X", "LEFT_EYE_Y"):
        fields[header.index(column)] = ""
    csv.write_text("\n".join([lines[0], ",".join(fields), *lines[2:]]) + "\n")
    metadata = ijb.read_ijba_metadata(csv)

    def expected(align):
        """Every image aligned by its three points, or (blank points, align=False) cropped to its box."""
        out = []
        for k, file in enumerate(metadata.files):
            image = decode_image((root / "images" / file).read_bytes())
            if align and bool(torch.isfinite(metadata.landmarks[k]).all()):
                out.append(align_face(image, metadata.landmarks[k], 32))
            else:
                x, y, w, h = metadata.boxes[k].tolist()
                out.append(crop_face(image, torch.tensor([x + w / 2, y + h / 2, w, h]), 32))
        return sorted(x.numpy().tobytes() for x in out)

    got = {}
    for align in (True, False):
        seen = []
        result = ijb.evaluate_ijba(root, E.mean_pooling(lambda x: seen.append(x.clone()) or x.float().flatten(1)),
                                   image_size=32, **({"align": True} if align else {}))   # off by default
        got[align] = sorted(x.numpy().tobytes() for x in torch.cat(seen))
        assert got[align] == expected(align)
        n = len(metadata.files)
        assert (result.images, result.aligned) == ((n, n - 1) if align else (n, 0))
        assert result.as_dict()["aligned_images"] == result.aligned
    assert len(set(got[True]) & set(got[False])) == 1    # only the row without landmarks is box-cropped both times
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten())   # the protocol crops boxes
    assert not E.evaluate_protocol(f"ijba:{root}", net, image_size=32).details["aligned"]


# ----------------------------------------------------------------------------------------------------
# template features


def insightface_pooling(feats, templates, medias):
    """ijb_11.py's image2template_feature, as its loops read (numpy, float64 output)."""
    unique = np.unique(templates)
    out = np.zeros((len(unique), feats.shape[1]))
    for k, t in enumerate(unique):
        in_t = np.where(templates == t)[0]
        media_feats = [feats[in_t][medias[in_t] == m].mean(0) for m in np.unique(medias[in_t])]
        out[k] = np.sum(media_feats, 0)
    return unique, out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_pooling_matches_insightface_loop(seed):
    rng = np.random.default_rng(seed)
    n, d = 120, 16
    feats, flips = rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32)
    scores = rng.uniform(0.1, 1.0, n).astype(np.float32)
    templates = rng.integers(0, 15, n) * 7
    medias = rng.integers(0, 10, n)  # media ids shared across templates: pooled per (template, media)
    ids, pooled = ijb.template_features(torch.from_numpy(feats), templates, medias, scores=torch.from_numpy(scores),
                                        flip_features=torch.from_numpy(flips))
    expected_ids, expected = insightface_pooling((feats + flips) * scores[:, None], templates, medias)
    assert ids.tolist() == expected_ids.tolist()
    np.testing.assert_allclose(pooled.numpy(), expected, rtol=1e-5, atol=1e-6)
    # a media weighs the same whatever its frame count: every image twice changes nothing
    plain = ijb.template_features(torch.from_numpy(feats), templates, medias)[1]
    twice = ijb.template_features(torch.from_numpy(np.concatenate([feats, feats])), np.tile(templates, 2),
                                  np.tile(medias, 2))[1]
    torch.testing.assert_close(twice, plain)


def test_pooling_bad_input():
    feats = torch.randn(4, 3)
    feats[2] = math.nan
    with pytest.raises(ValueError, match="features: image 2 has a NaN"):
        ijb.template_features(feats, [1, 1, 2, 2], [1, 2, 3, 4])
    feats[2] = 0
    with pytest.raises(ValueError, match="features: image 2 has an all-zero feature"):
        ijb.template_features(feats, [1, 1, 2, 2], [1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"media_ids: expected one id per image feature \(4\), got 3"):
        ijb.template_features(torch.randn(4, 3), [1, 1, 2, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="template 2 pools to a zero feature"):
        ijb.template_features(torch.randn(4, 3), [1, 1, 2, 2], [1, 2, 3, 4], scores=torch.tensor([1.0, 1, 0, 0]))
    ids, pooled = ijb.template_features(torch.zeros(0, 3), [], [])
    assert ids.shape == (0,) and pooled.shape == (0, 3)


# ----------------------------------------------------------------------------------------------------
# 1:1


def random_templates(seed, t=40, d=24, m=500):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randperm(10 * t, generator=gen)[:t] + 1  # unsorted, sparse ids
    feats = torch.nn.functional.normalize(torch.randn(t, d, generator=gen), dim=1)
    pairs = ids[torch.randint(0, t, (m, 2), generator=gen)]
    labels = torch.rand(m, generator=gen) < 0.3
    return ids, feats, pairs, labels


def test_chunked_scores_equal_unchunked_and_brute_force():
    ids, feats, pairs, labels = random_templates(0)
    whole = ijb.verify_templates(ids, feats, pairs, labels, chunk=len(pairs), progress=False)
    for chunk in (1, 7, 64):
        assert torch.equal(ijb.verify_templates(ids, feats, pairs, labels, chunk=chunk, progress=False).scores,
                           whole.scores)
    row = {int(t): i for i, t in enumerate(ids)}
    brute = torch.tensor([float(feats[row[int(a)]] @ feats[row[int(b)]]) for a, b in pairs])
    torch.testing.assert_close(whole.scores, brute)
    for convention in ("nearest", "interpolated"):
        assert torch.equal(whole.tar[convention], tar_at_far(whole.scores, labels, ijb.FARS, convention))


def test_perfect_separation_gives_tar_one_everywhere():
    ids = torch.arange(1, 9)
    feats = torch.eye(8)
    feats[1] = feats[0]  # templates 1, 2 are one person; 3, 4 another
    feats[3] = feats[2]
    pairs = torch.tensor([[1, 2], [3, 4]] + [[a, b] for a in range(1, 9) for b in range(5, 9) if a < b] + [[1, 3]])
    labels = torch.tensor([True, True] + [False] * (len(pairs) - 2))
    result = ijb.verify_templates(ids, feats * 3.0, pairs, labels, progress=False)  # normalised inside
    for convention in ("nearest", "interpolated"):
        assert result.tar[convention].tolist() == [1.0] * 6
    assert result.as_dict()["tar"]["nearest"]["1e-06"] == 1.0


def test_verify_errors_name_template_and_line(tmp_path):
    ids, feats = torch.tensor([1, 2, 3]), torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"pair 1: template 9 has no features"):
        ijb.verify_templates(ids, feats, [[1, 2], [3, 9]], [1, 0], progress=False)
    pairs = ijb.read_template_pairs(write(tmp_path / "p.txt", "1 2 1\n\n2 3 0\n3 7 0\n"))
    with pytest.raises(ValueError, match=r"p\.txt:4: template 7 has no features"):
        ijb.verify_templates(ids, feats, pairs, chunk=2, progress=False)
    with pytest.raises(ValueError, match="template_ids: template 2 is listed twice"):
        ijb.verify_templates([1, 2, 2], feats, [[1, 2]], [1], progress=False)
    bad = feats.clone()
    bad[1] = 0
    with pytest.raises(ValueError, match="template_feats: template 2 has a NaN, inf or all-zero"):
        ijb.verify_templates(ids, bad, [[1, 2]], [1], progress=False)
    with pytest.raises(ValueError, match=r"labels: expected one label per pair \(1\), got 2"):
        ijb.verify_templates(ids, feats, [[1, 2]], [1, 0], progress=False)
    empty = ijb.verify_templates(ids, feats, torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, dtype=torch.bool),
                                 progress=False)
    assert empty.scores.shape == (0,) and torch.isnan(empty.tar["nearest"]).all()


# ----------------------------------------------------------------------------------------------------
# 1:N


def test_open_set_two_galleries_known_answers():
    e = torch.eye(4)
    feats = torch.stack([e[0], e[1], e[2], e[3],                      # gallery templates 1, 2 (G1), 3, 4 (G2)
                         0.9 * e[0] + math.sqrt(1 - 0.81) * e[2],     # probe 11, subject 1: G1 rank 1 at 0.9
                         0.8 * e[0] + 0.6 * e[1],                     # probe 12, subject 2: G1 rank 2
                         e[2],                                        # probe 13, subject 3: G2 rank 1 at 1.0
                         0.4 * e[3] + math.sqrt(1 - 0.16) * e[0]])    # probe 14, subject 4: G2 rank 1 at 0.4
    ids = torch.tensor([1, 2, 3, 4, 11, 12, 13, 14])
    galleries = {"G1": ijb.TemplateSubjects(torch.tensor([1, 2]), torch.tensor([1, 2])),
                 "G2": ijb.TemplateSubjects(torch.tensor([3, 4]), torch.tensor([3, 4]))}
    probes = ijb.TemplateSubjects(torch.tensor([11, 12, 13, 14]), torch.tensor([1, 2, 3, 4]))
    result = ijb.identify_templates(ids, feats, probes, galleries, ranks=(1, 5), fpirs=(0.01, 0.5))
    # G1: non-mated tops 0 (probe 13) and 0.917 (probe 14); mated rank-1 probe 11 scores 0.9.
    assert result.galleries["G1"].rank == {1: 0.5, 5: 1.0}
    assert result.galleries["G1"].tpir == {0.01: 0.0, 0.5: 0.5}
    # G2: non-mated tops 0.436 (probe 11) and 0 (probe 12); mated probes at rank 1 score 1.0 and 0.4.
    assert result.galleries["G2"].rank == {1: 1.0, 5: 1.0}
    assert result.galleries["G2"].tpir == {0.01: 0.5, 0.5: 1.0}
    assert result.rank == {1: 0.75, 5: 1.0} and result.tpir == {0.01: 0.25, 0.5: 0.75}
    with pytest.raises(ValueError, match=r"galleries\['G2'\]: template 4 has no features"):
        ijb.identify_templates(ids[:4].tolist()[:3] + [11, 12, 13, 14], feats[[0, 1, 2, 4, 5, 6, 7]], probes, galleries)


# ----------------------------------------------------------------------------------------------------
# write_ijb_like and end to end


@pytest.fixture(scope="module")
def ijb_root(tmp_path_factory):
    world = SyntheticFaceWorld(seed=0, size=32)
    return write_ijb_like(world, tmp_path_factory.mktemp("ijb"), subjects=4, probe_templates_per_subject=1,
                          gallery_stills=(1, 2), probe_stills=(0, 1), probe_videos=(1, 1), frames_per_video=(2, 3),
                          impostors_per_probe=2, progress=False)


def test_write_ijb_like_loose_crops_and_the_aligned_renders(tmp_path):
    """Loose crops (the default) vs the world's own renders (loose_crop=None): same templates and pairs,
    crops 1.5 times the side with the face at varying offsets, the 5-point file in each crop's pixels."""
    world = SyntheticFaceWorld(seed=0, size=32)
    kwargs = dict(subjects=3, probe_templates_per_subject=1, gallery_stills=(2, 2), probe_stills=(1, 1),
                  probe_videos=(1, 1), frames_per_video=(2, 2), impostors_per_probe=1, progress=False)
    roots = {mode: write_ijb_like(world, tmp_path / str(mode), loose_crop=mode, **kwargs) for mode in (1.5, None)}
    meta = {mode: root / "IJBC/meta" for mode, root in roots.items()}
    for name in ("ijbc_face_tid_mid.txt", "ijbc_template_pair_label.txt"):
        assert (meta[1.5] / name).read_text() == (meta[None] / name).read_text()
    truth = {mode: json.loads((root / "pyfacex_ground_truth.json").read_text()) for mode, root in roots.items()}
    assert truth[1.5]["parameters"]["loose_crop"] == 1.5 and "loose_crop" not in truth[None]["parameters"]
    sides = {mode: {tuple(c.shape) for c in loose_crops(root)} for mode, root in roots.items()}
    assert sides == {1.5: {(3, 48, 48)}, None: {(3, 32, 32)}}
    points = ijb.read_name_5pts_score(meta[1.5] / "ijbc_name_5pts_score.txt").points
    assert bool(((points >= 0) & (points <= 47)).all())
    eye_line = points[:, :2].mean(1)                       # the faces sit at different places in their crops
    assert float(eye_line.std(0).min()) > 1.0
    scales = [r["nuisance"]["scale"] for r in truth[1.5]["images"].values()]
    assert min(scales) >= 0.85 and max(scales) <= 1.15 and len(set(scales)) == len(scales)
    with pytest.raises(ValueError, match=r"loose_crop: expected a number in \[1.0, 4.0\], got 0.5"):
        write_ijb_like(world, tmp_path / "bad", loose_crop=0.5, **kwargs)


def test_readers_on_write_ijb_like(ijb_root):
    meta = ijb_root / "IJBC" / "meta"
    truth = json.loads((ijb_root / "pyfacex_ground_truth.json").read_text())
    listing = ijb.read_face_tid_mid(meta / "ijbc_face_tid_mid.txt")
    assert ijb.read_name_5pts_score(meta / "ijbc_name_5pts_score.txt").images == listing.images
    subject = {int(t): v["subject"] for t, v in truth["templates"].items()}
    pairs = ijb.read_template_pairs(meta / "ijbc_template_pair_label.txt")
    assert pairs.labels.tolist() == [subject[a] == subject[b] for a, b in pairs.pairs.tolist()]
    for role, name in (("G1", "gallery_G1"), ("G2", "gallery_G2"), ("probe", "probe_mixed")):
        listed = ijb.read_template_subjects(meta / f"ijbc_1N_{name}.csv")
        assert sorted(t for t, v in truth["templates"].items() if v["role"] == role) == \
            sorted(str(t) for t in listed.template_ids.tolist())
        assert listed.subject_ids.tolist() == [subject[t] for t in listed.template_ids.tolist()]


def test_evaluate_ijb_identity_features_are_perfect(ijb_root):
    truth = json.loads((ijb_root / "pyfacex_ground_truth.json").read_text())
    listing = ijb.read_face_tid_mid(ijb_root / "IJBC/meta/ijbc_face_tid_mid.txt")
    people = sorted({v["identity"] for v in truth["images"].values()})
    identity = [people.index(truth["images"][f"IJBC/loose_crop/{name}"]["identity"]) for name in listing.images]
    result = ijb.evaluate_ijb(ijb_root, torch.eye(len(people))[identity], progress=False)
    assert result.verification.tar["nearest"].tolist() == [1.0] * 6
    assert result.identification.rank[1] == 1.0 and result.identification.tpir == {0.01: 1.0, 0.1: 1.0}
    with pytest.raises(ValueError, match=r"features: expected \(\d+, d\), one row per image of .*ijbc_face_tid_mid"):
        ijb.evaluate_ijb(ijb_root, torch.ones(3, 4), progress=False)


def colour(batch):
    """Features a uint8 batch's geometry changes: the mean colour of the whole and of the left half."""
    x = batch.float()
    return torch.cat([x.mean((2, 3)), x[:, :, :, : x.shape[3] // 2].mean((2, 3))], 1) + 1.0


def manual_pipeline(root, images):
    """insightface's template features of uint8 ``images`` (N, 3, H, W) in meta-file order, written out."""
    meta = root / "IJBC/meta"
    listing = ijb.read_face_tid_mid(meta / "ijbc_face_tid_mid.txt")
    return ijb.template_features(colour(images), listing.template_ids, listing.media_ids,
                                 scores=ijb.read_name_5pts_score(meta / "ijbc_name_5pts_score.txt").scores,
                                 flip_features=colour(images.flip(-1)))


def loose_crops(root):
    listing = ijb.read_face_tid_mid(root / "IJBC/meta/ijbc_face_tid_mid.txt")
    return [decode_image((root / "IJBC/loose_crop" / n).read_bytes()) for n in listing.images]


def test_evaluate_ijb_aligns_each_crop_by_its_five_points(ijb_root):
    shapes = []

    def spy(batch):
        shapes.append(tuple(batch.shape[1:]))
        return colour(batch)

    result = ijb.evaluate_ijb(ijb_root, spy, batch_size=5, one_to_n=False, progress=False)
    assert result.identification is None and set(shapes) == {(3, 112, 112)}
    points = ijb.read_name_5pts_score(ijb_root / "IJBC/meta/ijbc_name_5pts_score.txt").points
    crops = loose_crops(ijb_root)
    assert {tuple(c.shape) for c in crops} == {(3, 48, 48)}   # loose crops of a 32-px world: 1.5 x 32
    ids, feats = manual_pipeline(ijb_root, torch.stack([norm_crop(c, p) for c, p in zip(crops, points)]))
    assert torch.equal(result.template_ids, ids)
    torch.testing.assert_close(result.template_feats, feats)
    # a side without an ArcFace template: aligned at 112, then resized; aligned crops are square
    ijb.evaluate_ijb(ijb_root, spy, image_size=(64, 64), one_to_n=False, progress=False)
    assert shapes[-1] == (3, 64, 64)
    with pytest.raises(ValueError, match=r"image_size: aligned crops are square; expected \(S, S\), got \(64, 32\)"):
        ijb.evaluate_ijb(ijb_root, spy, image_size=(64, 32), one_to_n=False, progress=False)


def test_evaluate_ijb_without_alignment_takes_the_stored_crops(ijb_root):
    shapes = []

    def spy(batch):
        shapes.append(tuple(batch.shape[1:]))
        return colour(batch)

    result = ijb.evaluate_ijb(ijb_root, spy, align=False, image_size=None, batch_size=5, one_to_n=False,
                              progress=False)
    assert set(shapes) == {(3, 48, 48)}
    ids, feats = manual_pipeline(ijb_root, torch.stack(loose_crops(ijb_root)))
    assert torch.equal(result.template_ids, ids)
    torch.testing.assert_close(result.template_feats, feats)
    ijb.evaluate_ijb(ijb_root, spy, align=False, batch_size=64, one_to_n=False, progress=False)
    assert shapes[-1] == (3, 112, 112)  # resized to the default 112 x 112
    ijb.evaluate_ijb(ijb_root, spy, align=False, image_size=(40, 56), one_to_n=False, progress=False)
    assert shapes[-1] == (3, 40, 56)


def pixels(batch):
    """A consistent embedder: the mean-free grey levels of the face's centre (away from any border), 4x4 pooled."""
    x = batch.float().mean(1, keepdim=True)[:, :, 28:84, 28:84]
    x = torch.nn.functional.avg_pool2d(x, 4).flatten(1)
    return x - x.mean(1, keepdim=True)


def test_alignment_matters_on_loose_crops(ijb_root):
    """The faces the features see, aligned by the 5-point file, are the world's own renders of the same
    stills aligned by their true landmarks; the loose crops merely resized are not."""
    seen = {}
    for align in (True, False):
        batches = []
        ijb.evaluate_ijb(ijb_root, lambda b: batches.append(b.clone()) or pixels(b), align=align, flip=False,
                         one_to_n=False, progress=False)
        seen[align] = torch.cat(batches)
    truth = json.loads((ijb_root / "pyfacex_ground_truth.json").read_text())
    listing = ijb.read_face_tid_mid(ijb_root / "IJBC/meta/ijbc_face_tid_mid.txt")
    records = [truth["images"][f"IJBC/loose_crop/{name}"] for name in listing.images]
    stills = [i for i, r in enumerate(records) if "sample" in r]
    assert len(stills) >= 6 and all(records[i]["size"] == 48 for i in stills)
    world = SyntheticFaceWorld(seed=0, size=32)
    tight = world.render([records[i]["identity"] for i in stills], [records[i]["sample"] for i in stills])
    reference = pixels(norm_crop(tight.images, five_points(tight.landmarks)))
    aligned = torch.nn.functional.cosine_similarity(pixels(seen[True][stills]), reference)
    resized = torch.nn.functional.cosine_similarity(pixels(seen[False][stills]), reference)
    assert aligned.min() > 0.75 and resized.mean() < 0.6 and bool((aligned > resized).all())


def test_set_function_path_sees_the_aligned_crops(ijb_root):
    """With a set function each template's images go through it together, aligned as the per-image path's."""
    listing = ijb.read_face_tid_mid(ijb_root / "IJBC/meta/ijbc_face_tid_mid.txt")
    points = ijb.read_name_5pts_score(ijb_root / "IJBC/meta/ijbc_name_5pts_score.txt").points
    aligned = torch.stack([norm_crop(c, p) for c, p in zip(loose_crops(ijb_root), points)])
    expected = {}
    for k, template in enumerate(listing.template_ids.tolist()):
        expected.setdefault(template, []).append(colour(aligned[k:k + 1])[0].double())
    result = ijb.evaluate_ijb(ijb_root, None, set_fn=E.mean_pooling(lambda x: colour(x).double()), one_to_n=False,
                              max_images=4, num_workers=1, progress=False)
    for template, feature in zip(result.template_ids.tolist(), result.template_feats):
        mean = torch.stack(expected[template]).mean(0)
        torch.testing.assert_close(feature, mean / mean.norm())


def test_evaluate_ijb_checks_meta_files_agree(ijb_root, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(ijb_root / "IJBC" / "meta", copy / "IJBC" / "meta")
    points = copy / "IJBC/meta/ijbc_name_5pts_score.txt"
    lines = points.read_text().splitlines()
    points.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match=r"ijbc_name_5pts_score\.txt: lists \d+ images, .* they differ at image"):
        ijb.evaluate_ijb(copy, torch.ones(len(lines), 2), progress=False)
    points.write_text("\n".join(lines) + "\n")
    gallery = copy / "IJBC/meta/ijbc_1N_gallery_G1.csv"
    rows = gallery.read_text().splitlines()
    gallery.write_text("\n".join(rows + ["999,1,loose_crop/1.jpg,1,0,0,1,1"]) + "\n")
    where = rf"ijbc_1N_gallery_G1\.csv:{len(rows) + 1}"
    with pytest.raises(ValueError, match=rf"template 999 \(.*{where}\) has no features"):
        ijb.evaluate_ijb(copy, torch.ones(len(lines), 2), progress=False)
    with pytest.raises(FileNotFoundError, match="expected the meta directory"):
        ijb.evaluate_ijb(tmp_path / "nothing", torch.ones(1, 2), progress=False)
