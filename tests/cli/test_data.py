"""The pyfacex command line."""
import json

import numpy as np
import pytest

from pyfacex.cli import main
from pyfacex.data import RecordDataset
from pyfacex.data.synthetic import Nuisance, SyntheticFaceWorld
from pyfacex.data.synthetic.export import write_training_set


def test_data_synth_writes_a_training_set_and_protocols(tmp_path, capsys):
    out = tmp_path / "synth"
    status = main(["data", "synth", "--ids", "3", "--per-id", "2", "--out", str(out), "--size", "32",
                   "--formats", "record", "--difficulty", "0.2", "--seed", "5", "--protocols", "ijb,ijba"])
    assert status == 0
    assert RecordDataset(out).num_classes == 3 and len(RecordDataset(out)) == 6
    assert np.load(out / "ground_truth.npz")["landmarks"].shape == (6, 68, 2)
    assert (out / "protocols" / "ijb" / "IJBC" / "meta" / "ijbc_template_pair_label.txt").is_file()
    assert (out / "protocols" / "ijba" / "IJB-A_11_sets" / "split10" / "verify_comparisons_10.csv").is_file()
    assert "wrote 6 images of 3 identities" in capsys.readouterr().out
    # An existing set is not overwritten by accident: exit status 2 and a message.
    assert main(["data", "synth", "--ids", "3", "--per-id", "2", "--out", str(out), "--size", "32"]) == 2
    assert "overwrite" in capsys.readouterr().err


def test_data_synth_video_frames_store_video_ids(tmp_path):
    out = tmp_path / "videos"
    assert main(["data", "synth", "--ids", "2", "--per-id", "4", "--video-frames", "2", "--out", str(out),
                 "--size", "32", "--formats", "record"]) == 0
    assert RecordDataset(out).videos.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_data_synth_world_options_render_the_world_they_name(tmp_path):
    """Cohorts, local variety and nuisance knobs reach the world: the images are those of the same world
    built in Python, and info.json records it."""
    out = tmp_path / "cohorts"
    assert main(["data", "synth", "--ids", "4", "--per-id", "2", "--out", str(out), "--size", "32",
                 "--formats", "folder", "--cohort-size", "2", "--cohort-jitter", "0.3", "--local-variety", "1.5",
                 "--nuisance", "blur=10,occlusion=1.5"]) == 0
    info = json.loads((out / "info.json").read_text())
    assert (info["cohort_size"], info["cohort_jitter"], info["local_variety"]) == (2, 0.3, 1.5)
    assert (info["nuisance"]["blur"], info["nuisance"]["occlusion"], info["nuisance"]["yaw"]) == (10.0, 1.5, 90.0)
    world = SyntheticFaceWorld(size=32, nuisance=Nuisance(blur=10.0, occlusion=1.5), cohort_size=2,
                               cohort_jitter=0.3, local_variety=1.5)
    same = write_training_set(world, tmp_path / "python", 4, 2, formats="folder", progress=False)
    plain = write_training_set(SyntheticFaceWorld(size=32), tmp_path / "plain", 4, 2, formats="folder",
                               progress=False)
    image = "images/0000001/0001.jpg"
    assert (out / image).read_bytes() == (same / image).read_bytes() != (plain / image).read_bytes()


def test_unrecognisable_fraction_reaches_the_training_set(tmp_path):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--ids", "3", "--per-id", "4", "--out", str(out), "--size", "32",
                 "--formats", "record", "--unrecognisable", "0.5"]) == 0
    codes = np.load(out / "ground_truth.npz")["unrecognisable"]
    assert codes.shape == (12,) and int((codes > 0).sum()) == 6
    assert json.loads((out / "info.json").read_text())["unrecognisable"]["count"] == 6


@pytest.mark.parametrize("argv, message", [
    (["data", "synth", "--ids", "2", "--per-id", "2", "--out", "x", "--unrecognisable", "1.5"], "[0, 1]"),
    (["data", "synth", "--ids", "2", "--per-id", "2", "--out", "x", "--unrecognisable", "half"], "--unrecognisable"),
    (["data", "synth", "--ids", "2", "--per-id", "2", "--out", "x", "--cohort-jitter", "-0.1"], "--cohort-jitter"),
    (["data", "synth", "--ids", "2", "--per-id", "2", "--out", "x", "--nuisance", "glare=2"], "blur"),
    (["data", "synth", "--ids", "2", "--per-id", "2", "--out", "x", "--nuisance", "blur=lots"], "blur="),
    (["data", "synth", "--ids", "0", "--per-id", "2", "--out", "x"], "--ids"),
    (["data", "synth", "--ids", "2", "--per-id", "2", "--out", "x", "--formats", "lmdb"], "lmdb"),
    (["data", "synth", "--ids", "2", "--per-id", "2", "--out", "x", "--protocols", "megaface"], "megaface"),
    (["data", "synth", "--ids", "2", "--per-id", "2"], "--out"),
    (["data", "synth", "--ids", "2", "--per-id", "2", "--out", "x", "--quality", "0"], "1..100"),
])
def test_bad_arguments_exit_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_protocol_options_reach_their_writers(tmp_path):
    """--ijba-* and --ijb-loose-crop give the files the writers give with those keywords."""
    from pyfacex.data.synthetic import protocols as P

    out = tmp_path / "synth"
    assert main(["data", "synth", "--ids", "2", "--per-id", "1", "--out", str(out), "--size", "32",
                 "--formats", "record", "--seed", "3", "--protocols", "ijb,ijba", "--ijb-loose-crop", "0",
                 "--ijba-yaw-spread", "45", "--ijba-occlusion-share", "0.5", "--ijba-face-box", "image"]) == 0
    world = SyntheticFaceWorld(seed=3, size=32, nuisance=Nuisance(difficulty=0.3))
    ijba = P.write_ijba_like(world, tmp_path / "ijba", seed=3, progress=False, yaw_spread=45.0,
                             occlusion_share=0.5, face_box="image")
    ijb = P.write_ijb_like(world, tmp_path / "ijb", seed=3, progress=False, loose_crop=None)
    for ours, theirs in ((out / "protocols" / "ijba", ijba), (out / "protocols" / "ijb", ijb)):
        files = sorted(p.relative_to(theirs) for p in theirs.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(ours) for p in ours.rglob("*") if p.is_file())
        assert all((ours / f).read_bytes() == (theirs / f).read_bytes() for f in files)
    default = P.write_ijba_like(world, tmp_path / "default", seed=3, progress=False)
    comparisons = "IJB-A_11_sets/split1/verify_metadata_1.csv"
    assert (default / comparisons).read_bytes() != (ijba / comparisons).read_bytes()


@pytest.mark.parametrize("extra, message", [
    (["--ijba-yaw-spread", "30"], "--ijba-yaw-spread: applies to the ijba protocol"),
    (["--protocols", "ijba", "--ijba-yaw-spread", "120"], "(0, 90]"),
    (["--protocols", "ijb", "--ijb-loose-crop", "0.5"], "--ijb-loose-crop: expected 0"),
    (["--protocols", "ijba", "--ijba-occlusion-share", "2"], "[0, 1]"),
])
def test_protocol_options_are_checked_before_rendering(tmp_path, extra, message, capsys):
    out = tmp_path / "never"
    try:   # argparse's own checks exit, the rest return 2
        status = main(["data", "synth", "--ids", "2", "--per-id", "1", "--out", str(out), "--size", "32", *extra])
    except SystemExit as exit_info:
        status = exit_info.code
    assert status == 2 and message in capsys.readouterr().err and not out.exists()
