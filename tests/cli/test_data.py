"""The pyfacex command line."""
import numpy as np
import pytest

from pyfacex.cli import main
from pyfacex.data import RecordDataset


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


@pytest.mark.parametrize("argv, message", [
    (["data", "synth", "--ids", "0", "--per-id", "2", "--out", "x"], "--ids"),
    (["data", "synth", "--ids", "2", "--per-id", "2", "--out", "x", "--formats", "lmdb"], "lmdb"),
    (["data", "synth", "--ids", "2", "--per-id", "2", "--out", "x", "--protocols", "megaface"], "megaface"),
    (["data", "synth", "--ids", "2", "--per-id", "2"], "--out"),
])
def test_bad_arguments_exit_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
