"""Synthetic benchmark protocols: every file read back with small parsers written here from the real
formats (not from the writers), checked against the ground truth the writers leave beside them."""
from __future__ import annotations

import hashlib
import json
import struct
from collections import defaultdict
from pathlib import Path

import pytest

from pyfacex.data.codec import decode_image
from pyfacex.data.synthetic import Nuisance, SyntheticFaceWorld
from pyfacex.data.synthetic.protocols import (
    GROUND_TRUTH,
    write_cfp_fp_like,
    write_ijb_like,
    write_ijba_like,
    write_lfw_like,
    write_tinyface_like,
    write_ytf_like,
)
from pyfacex.data.verification_bin import read_verification_bin

SIZE = 32  # a small world keeps rendering cheap; the formats do not depend on the size

TINY = {
    "lfw": (write_lfw_like, dict(folds=2, pairs_per_fold=3, identities_per_fold=3, images_per_identity=2)),
    "cfp": (write_cfp_fp_like, dict(folds=2, pairs_per_fold=3, identities_per_fold=2, frontal_per_identity=3,
                                    profile_per_identity=2)),
    "tinyface": (write_tinyface_like, dict(identities=3, probes_per_identity=1, gallery_per_identity=2,
                                           distractor_identities=2, distractors_per_identity=2,
                                           probe_resolution=(8, 14), gallery_resolution=(16, 24))),
    "ijb": (write_ijb_like, dict(subjects=3, probe_templates_per_subject=2, gallery_stills=(1, 2),
                                 probe_stills=(0, 2), probe_videos=(1, 2), frames_per_video=(2, 3),
                                 impostors_per_probe=1)),
    "ytf": (write_ytf_like, dict(splits=2, pairs_per_split=2, identities_per_split=2, videos_per_identity=2,
                                 frames_per_video=(2, 3))),
    "ijba": (write_ijba_like, dict(subjects=5, splits=3, test_subjects=3, templates_per_subject=2, stills=(0, 2),
                                   videos=(1, 1), frames_per_video=(2, 3), impostors_per_template=2)),
}


@pytest.fixture(scope="module")
def world():
    return SyntheticFaceWorld(seed=0, size=SIZE, nuisance=Nuisance(difficulty=0.3))


@pytest.fixture(scope="module")
def written(world, tmp_path_factory):
    """Every protocol written once with seed 0: name -> root."""
    base = tmp_path_factory.mktemp("protocols")
    return {name: writer(world, base / name, seed=0, progress=False, **kwargs)
            for name, (writer, kwargs) in TINY.items()}


def truth(root: Path) -> dict:
    return json.loads((root / GROUND_TRUTH).read_text())


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def image_side(path: Path) -> int:
    image = decode_image(path.read_bytes(), source=str(path))
    assert image.shape[1] == image.shape[2]
    return image.shape[1]


# ---------------------------------------------------------------------------------------------- LFW


def test_lfw_pairs_txt_structure_and_labels(written):
    root = written["lfw"]
    gt = truth(root)
    lines = (root / "pairs.txt").read_text().split("\n")
    assert lines[-1] == "" and lines[0] == "2\t3"
    folds, n = map(int, lines[0].split("\t"))
    body = [line.split("\t") for line in lines[1:-1]]
    assert len(body) == folds * 2 * n
    fold_people = []
    for f in range(folds):
        block = body[f * 2 * n:(f + 1) * 2 * n]
        matched, mismatched = block[:n], block[n:]
        assert all(len(fields) == 3 for fields in matched) and all(len(fields) == 4 for fields in mismatched)
        people = set()
        for name, a, b in matched:
            assert a != b
            files = [root / "lfw" / name / f"{name}_{int(x):04d}.jpg" for x in (a, b)]
            ids = {gt["images"][str(p.relative_to(root))]["identity"] for p in files}
            assert ids == {gt["names"][name]}
            people.add(name)
        for n1, a, n2, b in mismatched:
            assert n1 < n2
            ida = gt["images"][f"lfw/{n1}/{n1}_{int(a):04d}.jpg"]["identity"]
            idb = gt["images"][f"lfw/{n2}/{n2}_{int(b):04d}.jpg"]["identity"]
            assert ida != idb
            people |= {n1, n2}
        assert len({tuple(x) for x in block}) == 2 * n  # no repeated pair
        fold_people.append(people)
    assert not fold_people[0] & fold_people[1]  # folds are disjoint in people
    images = sorted((root / "lfw").rglob("*.jpg"))
    assert len(images) == len(gt["images"]) == 2 * 3 * 2
    assert all(image_side(p) == SIZE for p in images)


def test_lfw_bin_holds_the_pairs_in_pairs_txt_order(written):
    root = written["lfw"]
    encoded, issame = read_verification_bin(root / "lfw.bin", decode=False)
    lines = [line.split("\t") for line in (root / "pairs.txt").read_text().splitlines()[1:]]
    expected = []
    for fields in lines:
        if len(fields) == 3:
            expected += [(fields[0], fields[1]), (fields[0], fields[2])]
        else:
            expected += [(fields[0], fields[1]), (fields[2], fields[3])]
    assert issame.tolist() == [len(fields) == 3 for fields in lines]
    for data, (name, number) in zip(encoded, expected, strict=True):
        assert data == (root / "lfw" / name / f"{name}_{int(number):04d}.jpg").read_bytes()


# ---------------------------------------------------------------------------------------------- CFP


def read_cfp_list(path: Path) -> list[Path]:
    paths = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        index, rel = line.split(" ")
        assert int(index) == i
        paths.append((path.parent / rel).resolve())
    return paths


def test_cfp_layout_pairs_and_poses(written):
    root = written["cfp"]
    gt = truth(root)
    frontal = read_cfp_list(root / "Protocol/Pair_list_F.txt")
    profile = read_cfp_list(root / "Protocol/Pair_list_P.txt")
    assert len(frontal) == 4 * 3 and len(profile) == 4 * 2
    assert all(p.is_file() and p.parent.name == "frontal" and len(p.parent.parent.name) == 3 for p in frontal)
    assert all(p.is_file() and p.parent.name == "profile" for p in profile)
    names = (root / "Data/list_names.txt").read_text().splitlines()
    assert len(names) == 4
    rel = lambda p: str(p.relative_to(root.resolve()))  # noqa: E731
    for p in frontal:
        assert abs(gt["images"][rel(p)]["pose"][0]) <= 10.0
    for p in profile:
        assert 60.0 <= abs(gt["images"][rel(p)]["pose"][0]) <= 90.0
    yaws = [gt["images"][rel(p)]["pose"][0] for p in profile]
    assert min(yaws) < 0 < max(yaws)  # profiles of both sides
    for protocol, side_b in (("FP", profile), ("FF", frontal)):
        folds = sorted(d.name for d in (root / "Protocol/Split" / protocol).iterdir())
        assert folds == ["01", "02"]
        fold_people = []
        for fold in folds:
            people = set()
            for label in ("same", "diff"):
                rows = [tuple(map(int, line.split(","))) for line in
                        (root / "Protocol/Split" / protocol / fold / f"{label}.txt").read_text().splitlines()]
                assert len(rows) == 3 and len(set(rows)) == 3
                for i, j in rows:
                    a, b = frontal[i - 1], side_b[j - 1]
                    assert a != b
                    person_a, person_b = a.parent.parent.name, b.parent.parent.name
                    assert (person_a == person_b) == (label == "same")
                    assert (gt["images"][rel(a)]["identity"] == gt["images"][rel(b)]["identity"]) == (label == "same")
                    people |= {person_a, person_b}
            fold_people.append(people)
        assert not fold_people[0] & fold_people[1]  # identity-separable folds
        _, issame = read_verification_bin(root / f"cfp_{protocol.lower()}.bin", decode=False)
        assert issame.tolist() == ([True] * 3 + [False] * 3) * 2


# ----------------------------------------------------------------------------------------- TinyFace


def read_mat(path: Path) -> dict:
    """Minimal MATLAB Level 5 reader: uncompressed double columns and cell arrays of char rows."""
    data = path.read_bytes()
    assert data[124:128] == struct.pack("<H", 0x0100) + b"IM"

    def matrix(payload):
        _, flags, at = element_in(payload, 0)
        _, dims, at = element_in(payload, at)
        _, name, at = element_in(payload, at)
        mx_class = struct.unpack("<I", flags[:4])[0] & 0xFF
        count = 1
        for d in struct.unpack(f"<{len(dims) // 4}i", dims):
            count *= d
        if mx_class == 1:  # cell
            cells = []
            for _ in range(count):
                _, inner, at = element_in(payload, at)
                cells.append(matrix(inner)[1])
            return name.decode(), cells
        kind, values, _ = element_in(payload, at)
        if mx_class == 4:  # char, stored as uint16
            assert kind == 4
            return name.decode(), values.decode("utf-16-le")
        assert mx_class == 6 and kind == 9  # double
        return name.decode(), list(struct.unpack(f"<{len(values) // 8}d", values))

    def element_in(buffer, offset):
        kind, size = struct.unpack_from("<II", buffer, offset)
        return kind, buffer[offset + 8:offset + 8 + size], offset + 8 + size + (-size % 8)

    out, offset = {}, 128
    while offset < len(data):
        kind, payload, offset = element_in(data, offset)
        assert kind == 14
        name, value = matrix(payload)
        out[name] = value
    return out


def test_tinyface_lists_labels_distractors_and_resolution(written):
    root = written["tinyface"]
    gt = truth(root)
    testing = root / "Testing_Set"
    gallery = read_mat(testing / "gallery_match_img_ID_pairs.mat")
    probe = read_mat(testing / "probe_img_ID_pairs.mat")
    assert sorted(gallery["gallery_set"]) == sorted(p.name for p in (testing / "Gallery_Match").iterdir())
    assert sorted(probe["probe_set"]) == sorted(p.name for p in (testing / "Probe").iterdir())
    assert len(probe["probe_set"]) == 3 and len(gallery["gallery_set"]) == 6
    for names, ids in ((gallery["gallery_set"], gallery["gallery_ids"]), (probe["probe_set"], probe["probe_ids"])):
        assert [int(name.split("_")[0]) for name in names] == [int(i) for i in ids]  # readers' label rule
    assert set(probe["probe_ids"]) == set(gallery["gallery_ids"])  # closed set: every probe has a mate
    all_names = [p.name for d in ("Probe", "Gallery_Match", "Gallery_Distractor") for p in (testing / d).iterdir()]
    assert len(set(all_names)) == len(all_names)  # readers key images by file name
    distractors = sorted((testing / "Gallery_Distractor").iterdir())
    assert len(distractors) == 4

    def identity(folder, path):
        return gt["images"][f"Testing_Set/{folder}/{path.name}"]["identity"]

    probe_people = {identity("Probe", p) for p in (testing / "Probe").iterdir()}
    distractor_people = {identity("Gallery_Distractor", p) for p in distractors}
    assert len(distractor_people) == 2 and not probe_people & distractor_people
    for p in (testing / "Probe").iterdir():
        record = gt["images"][f"Testing_Set/Probe/{p.name}"]
        side = image_side(p)
        assert 8 <= side <= 14 and record["size"] == side == record["nuisance"]["resolution"]
        assert 0.5 <= record["nuisance"]["blur"] <= 1.5
        assert gt["labels"][p.name.split("_")[0]] == record["identity"]
    for p in list((testing / "Gallery_Match").iterdir()) + distractors:
        assert 16 <= image_side(p) <= 24


# ---------------------------------------------------------------------------------------------- IJB


def test_ijb_media_templates_pairs_and_csvs(written):
    root = written["ijb"]
    gt = truth(root)
    meta = root / "IJBC/meta"
    rows = [line.split(" ") for line in (meta / "ijbc_face_tid_mid.txt").read_text().splitlines()]
    assert all(len(r) == 3 for r in rows)
    records = {name: gt["images"][f"IJBC/loose_crop/{name}"] for name, _, _ in rows}
    assert sorted(records) == sorted(p.name for p in (root / "IJBC/loose_crop").iterdir())
    media, template_ids = defaultdict(set), defaultdict(set)
    for name, t, m in rows:
        media[m].add(name)
        template_ids[t].add(records[name]["identity"])
    assert all(len(ids) == 1 for ids in template_ids.values())  # identity-pure templates
    videos = defaultdict(set)
    for name, _, m in rows:
        record = records[name]
        if "video" in record:
            videos[(record["identity"], record["video"])].add(m)
        else:
            assert media[m] == {name}  # a still is its own media
    assert videos and all(len(ms) == 1 for ms in videos.values())  # a video is one media ...
    for (identity, video), (m,) in videos.items():  # ... holding all its frames and nothing else
        assert {(records[n]["identity"], records[n].get("video")) for n in media[m]} == {(identity, video)}
    assert any(len(media[m]) > 1 for (m,) in videos.values())

    def csv(file):
        lines = (meta / file).read_text().splitlines()
        assert lines[0] == "TEMPLATE_ID,SUBJECT_ID,FILENAME,SIGHTING_ID,FACE_X,FACE_Y,FACE_WIDTH,FACE_HEIGHT"
        return [line.split(",") for line in lines[1:]]

    subject_of, role = {}, {}
    for file, kind in (("ijbc_1N_gallery_G1.csv", "G1"), ("ijbc_1N_gallery_G2.csv", "G2"),
                       ("ijbc_1N_probe_mixed.csv", "probe")):
        for t, s, filename, sighting, *box in csv(file):
            assert subject_of.setdefault(t, s) == s and role.setdefault(t, kind) == kind
            name = filename.removeprefix("loose_crop/")
            assert (t, sighting) in {(tt, m) for n, tt, m in rows if n == name}
            assert (root / "IJBC" / filename).is_file() and len(box) == 4
            assert gt["subjects"][s] == records[name]["identity"]
            if kind != "probe":
                assert "sample" in records[name]  # galleries hold stills only
    g1 = {subject_of[t] for t in role if role[t] == "G1"}
    g2 = {subject_of[t] for t in role if role[t] == "G2"}
    probes = {subject_of[t] for t in role if role[t] == "probe"}
    assert g1 and g2 and not g1 & g2 and probes == g1 | g2
    assert set(role) == set(template_ids)
    assert all(any("video" in records[n] for n, tt, _ in rows if tt == t) for t in role if role[t] == "probe")

    pairs = [tuple(map(int, line.split(" ")))
             for line in (meta / "ijbc_template_pair_label.txt").read_text().splitlines()]
    assert len(pairs) == 6 * 2 and sum(y for *_, y in pairs) == 6
    for a, b, y in pairs:
        assert role[str(a)] in ("G1", "G2") and role[str(b)] == "probe"
        assert y == int(subject_of[str(a)] == subject_of[str(b)])

    points = [line.split(" ") for line in (meta / "ijbc_name_5pts_score.txt").read_text().splitlines()]
    assert [p[0] for p in points] == [r[0] for r in rows]
    for p in points:
        values = list(map(float, p[1:]))
        assert len(values) == 11 and 0.0 <= values[-1] <= 1.0
        assert all(-SIZE <= v <= 2 * SIZE for v in values[:10])


# ---------------------------------------------------------------------------------------------- YTF


def test_ytf_splits_videos_and_labels(written):
    root = written["ytf"]
    gt = truth(root)
    lines = (root / "splits.txt").read_text().splitlines()
    header = [c.strip() for c in lines[0].split(",")]
    assert header == ["split number", "pair number", "first name", "second name", "is same"]
    rows = [dict(zip(header, (c.strip() for c in line.split(",")), strict=True)) for line in lines[1:]]
    assert len(rows) == 2 * 2 * 2
    assert [int(r["pair number"]) for r in rows] == list(range(1, len(rows) + 1))
    split_people = defaultdict(set)
    db = root / "frame_images_DB"
    for r in rows:
        identities = []
        for video in (r["first name"], r["second name"]):
            person, number = video.split("/")
            frames = sorted((db / person / number).iterdir())
            assert 2 <= len(frames) <= 3 and all(f.name.startswith(f"{number}.") for f in frames)
            ids = {gt["images"][str(f.relative_to(root))]["identity"] for f in frames}
            assert ids == {gt["names"][person]}
            identities.append(gt["names"][person])
            split_people[r["split number"]].add(person)
        assert r["first name"] != r["second name"]
        assert int(r["is same"]) == int(identities[0] == identities[1])
    assert sum(int(r["is same"]) for r in rows) == 4
    assert not split_people["1"] & split_people["2"]
    for person in gt["names"]:
        boxes = (db / f"{person}.labeled_faces.txt").read_text().splitlines()
        frames = sorted(str(p.relative_to(db)) for p in (db / person).rglob("*.jpg"))
        assert sorted(b.split(",")[0].replace("\\", "/") for b in boxes) == frames
        assert all(len(b.split(",")) == 8 for b in boxes)


# -------------------------------------------------------------------------------------------- IJB-A

IJBA_HEADER = ["TEMPLATE_ID", "SUBJECT_ID", "FILE", "MEDIA_ID", "SIGHTING_ID", "FRAME", "FACE_X", "FACE_Y",
               "FACE_WIDTH", "FACE_HEIGHT"]


def test_ijba_splits_templates_and_comparisons(written):
    root = written["ijba"]
    gt = truth(root)
    sets = root / "IJB-A_11_sets"
    assert sorted(p.name for p in sets.iterdir()) == ["split1", "split2", "split3"]
    template_rows = {}
    for split in (1, 2, 3):
        tables = {}
        for part in ("train", "verify_metadata"):
            lines = (sets / f"split{split}" / f"{part}_{split}.csv").read_text().splitlines()
            header = lines[0].split(",")
            assert header[:10] == IJBA_HEADER
            tables[part] = [dict(zip(header, line.split(","))) for line in lines[1:]]
        subjects = {part: {row["SUBJECT_ID"] for row in rows} for part, rows in tables.items()}
        assert len(subjects["verify_metadata"]) == 3 and not subjects["train"] & subjects["verify_metadata"]
        assert len(subjects["train"] | subjects["verify_metadata"]) == 5
        assert sorted(int(s) for s in subjects["verify_metadata"]) == gt["splits"][str(split)]
        subject_of, files = {}, defaultdict(list)
        for row in tables["verify_metadata"] + tables["train"]:
            files[row["TEMPLATE_ID"]].append(row["FILE"])
            record = gt["images"][f"images/{row['FILE']}"]
            assert gt["subjects"][row["SUBJECT_ID"]] == record["identity"]       # identity-pure templates
            assert subject_of.setdefault(row["TEMPLATE_ID"], row["SUBJECT_ID"]) == row["SUBJECT_ID"]
            # the box holds the face: the square around the landmarks, inside the stored image
            x, y, w, h = (float(row[k]) for k in ("FACE_X", "FACE_Y", "FACE_WIDTH", "FACE_HEIGHT"))
            assert w == h > 0 and -1 <= x and x + w <= SIZE + 1
            if row["FILE"].startswith("frame/"):
                assert row["FRAME"] == str(record["frame"]) and "video" in record
            else:
                assert row["FRAME"] == "" and "sample" in record
        pairs = [tuple(line.split(",")) for line in
                 (sets / f"split{split}" / f"verify_comparisons_{split}.csv").read_text().splitlines()]
        assert len(set(pairs)) == len(pairs) and all(a < b for a, b in ((int(a), int(b)) for a, b in pairs))
        test_templates = {row["TEMPLATE_ID"] for row in tables["verify_metadata"]}
        assert all(a in test_templates and b in test_templates for a, b in pairs)
        genuine = [(a, b) for a, b in pairs if subject_of[a] == subject_of[b]]
        assert len(genuine) == 3          # every test subject's two templates
        assert len(pairs) - len(genuine) >= 2 * 3 // 2   # 2 impostors drawn per template, a pair at most twice
        for template, listed in files.items():   # a template is the same images in every split
            assert template_rows.setdefault(template, listed) == listed
            assert gt["templates"][template] == int(subject_of[template])
    assert len(template_rows) == 5 * 2


# ------------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", sorted(TINY))
def test_same_seed_same_files_other_seed_other_protocol(name, world, written, tmp_path):
    writer, kwargs = TINY[name]
    again = writer(world, tmp_path / "again", seed=0, progress=False, **kwargs)
    assert tree_digest(again) == tree_digest(written[name])
    other = writer(world, tmp_path / "other", seed=1, progress=False, **kwargs)
    assert tree_digest(other) != tree_digest(written[name])


# ------------------------------------------------------------------------------------ bad arguments


@pytest.mark.parametrize("writer, kwargs, argument", [
    (write_lfw_like, dict(folds=1), "folds"),
    (write_lfw_like, dict(folds=2, pairs_per_fold=4, identities_per_fold=2, images_per_identity=2), "pairs_per_fold"),
    (write_lfw_like, dict(images_per_identity=1), "images_per_identity"),
    (write_lfw_like, dict(quality=0), "quality"),
    (write_lfw_like, dict(seed=-1), "seed"),
    (write_cfp_fp_like, dict(folds=0), "folds"),
    (write_cfp_fp_like, dict(profile_yaw=(50.0, 100.0)), "profile_yaw"),
    (write_cfp_fp_like, dict(frontal_yaw=95.0), "frontal_yaw"),
    (write_cfp_fp_like, dict(pairs_per_fold=2001), "pairs_per_fold"),
    (write_tinyface_like, dict(probe_resolution=(16, 64)), "probe_resolution"),
    (write_tinyface_like, dict(gallery_resolution=(20, 10)), "gallery_resolution"),
    (write_ijb_like, dict(subjects=3, impostors_per_probe=3), "impostors_per_probe"),
    (write_ijb_like, dict(probe_stills=(0, 2), probe_videos=(0, 1)), "probe_videos"),
    (write_ytf_like, dict(videos_per_identity=1), "videos_per_identity"),
    (write_ytf_like, dict(splits=1), "splits"),
    (write_ijba_like, dict(splits=11), "splits"),
    (write_ijba_like, dict(subjects=5, test_subjects=5), "test_subjects"),
    (write_ijba_like, dict(templates_per_subject=1), "templates_per_subject"),
    (write_ijba_like, dict(stills=(0, 1), videos=(0, 1)), "videos"),
    (write_ijba_like, dict(subjects=5, test_subjects=2, impostors_per_template=3), "impostors_per_template"),
])
def test_bad_arguments_name_the_argument(writer, kwargs, argument, world, tmp_path):
    with pytest.raises((ValueError, TypeError), match=argument):
        writer(world, tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x").exists()  # checked before anything is written


def test_empty_parts_work(world, tmp_path):
    root = write_tinyface_like(world, tmp_path / "t", identities=1, probes_per_identity=1, gallery_per_identity=1,
                               distractor_identities=0, probe_resolution=(8, 8), gallery_resolution=(16, 16),
                               progress=False)
    assert not any((root / "Testing_Set/Gallery_Distractor").iterdir())
    assert read_mat(root / "Testing_Set/probe_img_ID_pairs.mat") == {"probe_set": ["1_1.jpg"], "probe_ids": [1.0]}
    root = write_ijb_like(world, tmp_path / "i", subjects=2, probe_templates_per_subject=1, gallery_stills=(1, 1),
                          probe_stills=(1, 1), probe_videos=(0, 0), impostors_per_probe=0, progress=False)
    pairs = (root / "IJBC/meta/ijbc_template_pair_label.txt").read_text().splitlines()
    assert pairs == ["1 3 1", "2 4 1"]
