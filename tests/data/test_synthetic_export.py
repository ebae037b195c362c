"""Synthetic training sets on disk: folder and RecordIO agree with the world, ground truth included."""
import json

import numpy as np
import pytest
import torch

from pyfacex.data import ImageFolderDataset, RecordDataset, decode_image, encode_jpeg
from pyfacex.data.synthetic import Nuisance, SyntheticFaceWorld
from pyfacex.data.synthetic.export import write_training_set


@pytest.fixture(scope="module")
def world():
    return SyntheticFaceWorld(seed=2, size=48, nuisance=Nuisance(difficulty=0.5), chunk=8)


def test_folder_and_record_hold_the_worlds_images(world, tmp_path):
    out = write_training_set(world, tmp_path, 5, 3, progress=False)
    record, folder = RecordDataset(out), ImageFolderDataset(out / "images")
    assert len(record) == len(folder) == 15 and record.num_classes == folder.num_classes == 5
    assert record.labels.tolist() == [c for c in range(5) for _ in range(3)] == folder.labels.tolist()
    expected = world.render(world.identities("train", 5).repeat_interleave(3), torch.arange(3).repeat(5))
    for i in (0, 7, 14):
        stored = decode_image(encode_jpeg(expected.images[i], 95))
        assert torch.equal(record[i][0], stored) and torch.equal(folder[i][0], stored)
    truth = np.load(out / "ground_truth.npz")
    assert np.array_equal(truth["landmarks"], expected.landmarks.numpy())
    assert np.array_equal(truth["identity"], expected.identity.numpy())
    assert np.array_equal(truth["nuisance_yaw"], expected.nuisance["yaw"].numpy())
    info = json.loads((out / "info.json").read_text())
    assert info["seed"] == 2 and info["per_identity"] == 3 and info["formats"] == ["folder", "record"]


def test_test_split_and_single_format(world, tmp_path):
    out = write_training_set(world, tmp_path, 2, 2, split="test", formats="record", progress=False)
    assert not (out / "images").exists() and RecordDataset(out).num_classes == 2
    truth = np.load(out / "ground_truth.npz")
    assert set(truth["identity"].tolist()) == set(world.identities("test", 2).tolist())


def test_videos_round_trip_with_their_ids_in_both_formats(world, tmp_path):
    # 3 identities × 6 images as 2 videos of 3 frames each
    out = write_training_set(world, tmp_path, 3, 6, frames_per_video=3, progress=False)
    record, folder = RecordDataset(out), ImageFolderDataset(out / "images")
    assert record.labels.tolist() == folder.labels.tolist() == [c for c in range(3) for _ in range(6)]
    assert record.videos.tolist() == folder.videos.tolist() == [v for v in range(6) for _ in range(3)]
    assert (out / "images" / "0000002" / "0001" / "0002.jpg").is_file()
    identities = world.identities("train", 3)
    truth = np.load(out / "ground_truth.npz")
    assert truth["video"].tolist() == [0, 0, 0, 1, 1, 1] * 3 and truth["video_id"].tolist() == record.videos.tolist()
    assert truth["sample"].tolist() == [0, 1, 2] * 6
    for i in (0, 10, 17):  # image i: class i // 6, video (i // 3) % 2, frame i % 3
        expected = world.video(int(identities[i // 6]), (i // 3) % 2, 3)
        stored = decode_image(encode_jpeg(expected.images[i % 3], 95))
        assert torch.equal(record[i][0], stored) and torch.equal(folder[i][0], stored)
        assert np.array_equal(truth["landmarks"][i], expected.landmarks[i % 3].numpy())
    assert json.loads((out / "info.json").read_text())["frames_per_video"] == 3
    with pytest.raises(ValueError, match="frames_per_video: expected a divisor of per_identity = 6"):
        write_training_set(world, tmp_path / "other", 1, 6, frames_per_video=4, progress=False)


def test_refuses_to_overwrite_and_bad_arguments(world, tmp_path):
    write_training_set(world, tmp_path, 1, 1, formats="folder", progress=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_training_set(world, tmp_path, 1, 1, formats="folder", progress=False)
    for kwargs, message in [(dict(num_identities=0, per_identity=1), "num_identities"),
                            (dict(num_identities=1, per_identity=1, formats="lmdb"), "formats"),
                            (dict(num_identities=1, per_identity=1, quality=0), "quality")]:
        with pytest.raises(ValueError, match=message):
            write_training_set(world, tmp_path / "other", progress=False, **kwargs)
