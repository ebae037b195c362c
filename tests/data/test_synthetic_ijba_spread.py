"""write_ijba_like's within-template spread of pose and occlusion (yaw_spread, occlusion_share) and its
whole-image face box (face_box="image"), read back from the CSVs and the ground truth."""
from __future__ import annotations

import json
from collections import defaultdict

import pytest

from pyfacex.data.synthetic import Nuisance, SyntheticFaceWorld
from pyfacex.data.synthetic.nuisance import OCCLUDERS
from pyfacex.data.synthetic.protocols import GROUND_TRUTH, write_ijba_like
from pyfacex.data.synthetic.protocols.ijba import OCCLUSION_REGIONS

SIZE = 32
SMALL = dict(subjects=4, splits=1, test_subjects=2, templates_per_subject=2, impostors_per_template=1)
YAW = 45.0


@pytest.fixture(scope="module")
def world():
    return SyntheticFaceWorld(seed=0, size=SIZE, nuisance=Nuisance(difficulty=0.3))


def media_of_templates(root) -> dict[str, dict[str, list[dict]]]:
    """template id -> media id -> the ground-truth records of its images (every split's listing)."""
    truth = json.loads((root / GROUND_TRUTH).read_text())
    templates: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    folder = root / "IJB-A_11_sets" / "split1"
    for part in ("verify_metadata_1.csv", "train_1.csv"):
        lines = (folder / part).read_text().splitlines()
        header = lines[0].split(",")
        for line in lines[1:]:
            row = dict(zip(header, line.split(",")))
            templates[row["TEMPLATE_ID"]][row["MEDIA_ID"]].append(truth["images"][f"images/{row['FILE']}"])
    return templates


def spread_holds(templates, media: int, occluded: int) -> bool:
    """Whether every template's media fill the ``media`` yaw strata of [-YAW, YAW] once each and exactly
    ``occluded`` of them wear an occluder, each on another region."""
    width = 2 * YAW / media
    for by_media in templates.values():
        first = [records[0] for records in by_media.values()]
        strata = sorted(int((r["pose"][0] + YAW) // width) for r in first)
        worn = [(r["nuisance"]["occluder"], r["nuisance"]["occluder_x"]) for r in first if r["nuisance"]["occluder"]]
        if strata != list(range(media)) or len(worn) != occluded or len(set(worn)) != occluded:
            return False
    return True


def test_spread_fills_yaw_strata_and_occludes_distinct_regions(world, tmp_path):
    root = write_ijba_like(world, tmp_path / "spread", stills=(4, 4), videos=(0, 0), yaw_spread=YAW,
                           occlusion_share=0.5, progress=False, **SMALL)
    templates = media_of_templates(root)
    assert len(templates) == 8 and spread_holds(templates, media=4, occluded=2)
    regions = {(float(OCCLUDERS[name]), x) for name, x, _ in OCCLUSION_REGIONS}
    for by_media in templates.values():
        for (record,) in by_media.values():
            worn = (record["nuisance"]["occluder"], record["nuisance"]["occluder_x"])
            assert worn[0] == 0 or worn in regions
    parameters = json.loads((root / GROUND_TRUTH).read_text())["parameters"]
    assert parameters["yaw_spread"] == YAW and parameters["occlusion_share"] == 0.5


def test_without_the_options_templates_do_not_spread(world, tmp_path):
    """The world's own draws (the default) leave most templates on one side and unevenly occluded."""
    root = write_ijba_like(world, tmp_path / "plain", stills=(4, 4), videos=(0, 0), progress=False, **SMALL)
    assert not spread_holds(media_of_templates(root), media=4, occluded=2)
    assert not {"yaw_spread", "occlusion_share", "face_box"} & set(json.loads((root / GROUND_TRUTH).read_text())
                                                                   ["parameters"])


def test_a_video_is_one_medium_of_the_spread(world, tmp_path):
    root = write_ijba_like(world, tmp_path / "videos", stills=(1, 1), videos=(1, 1), frames_per_video=(3, 3),
                           yaw_spread=YAW, occlusion_share=0.5, progress=False, **SMALL)
    templates = media_of_templates(root)
    assert spread_holds(templates, media=2, occluded=1)
    for by_media in templates.values():
        frames = max(by_media.values(), key=len)
        assert len(frames) == 3
        assert len({(r["pose"][0], r["nuisance"]["occluder"]) for r in frames}) == 1


@pytest.mark.parametrize("share, media, occluded", [(0.0, 3, 0), (1.0, 3, 3), (0.5, 3, 2), (0.25, 3, 1)])
def test_occlusion_share_rounds_half_up(world, tmp_path, share, media, occluded):
    root = write_ijba_like(world, tmp_path / "share", stills=(media, media), videos=(0, 0), occlusion_share=share,
                           progress=False, **SMALL)
    for by_media in media_of_templates(root).values():
        assert sum(records[0]["nuisance"]["occluder"] > 0 for records in by_media.values()) == occluded


def test_face_box_image_is_the_whole_image(world, tmp_path):
    root = write_ijba_like(world, tmp_path / "box", stills=(1, 2), videos=(0, 1), frames_per_video=(2, 2),
                           face_box="image", progress=False, **SMALL)
    lines = (root / "IJB-A_11_sets" / "split1" / "verify_metadata_1.csv").read_text().splitlines()
    header = lines[0].split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        assert [float(row[k]) for k in ("FACE_X", "FACE_Y", "FACE_WIDTH", "FACE_HEIGHT")] == [0, 0, SIZE, SIZE]


@pytest.mark.parametrize("kwargs, argument", [
    (dict(yaw_spread=0.0), "yaw_spread"),
    (dict(yaw_spread=95.0), "yaw_spread"),
    (dict(yaw_spread="wide"), "yaw_spread"),
    (dict(occlusion_share=1.5), "occlusion_share"),
    (dict(face_box="loose"), "face_box"),
])
def test_bad_spread_arguments_name_the_argument(world, tmp_path, kwargs, argument):
    with pytest.raises((TypeError, ValueError), match=argument):
        write_ijba_like(world, tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x").exists()
