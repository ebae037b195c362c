import functools
import json

import pytest
import torch

from pyfacex.data import decode_image, encode_png, resample_frames
from pyfacex.data.synthetic import SyntheticFaceWorld
from pyfacex.data.synthetic.protocols import write_ytf_like
from pyfacex.eval.sets import mean_pooling
from pyfacex.eval.verification.protocol import verify_pairs
from pyfacex.eval.video import (
    crop_face,
    embed_videos,
    evaluate_ytf,
    read_ytf,
    read_ytf_splits,
    verify_videos,
    video_chunks,
)

# person -> video -> frame count; frame f of video v of person p is a flat colour (f, v, p-code)
VIDEOS = {"Ann_A": {0: 12, 1: 3}, "Bob_B": {0: 2}}
CODE = {"Ann_A": 100, "Bob_B": 200}


def _colour(person, video, frame):
    return torch.tensor([frame, video, CODE[person]], dtype=torch.float32)


def _write_frames(root, boxes_for=("Ann_A",)):
    for person, videos in VIDEOS.items():
        lines = []
        for video, count in videos.items():
            folder = root / "frame_images_DB" / person / str(video)
            folder.mkdir(parents=True)
            for f in range(1, count + 1):  # numbered from 1 as the release, "10" sorts after "9"
                image = _colour(person, video, f).to(torch.uint8)[:, None, None].expand(3, 6, 8).contiguous()
                (folder / f"{video}.{f}.png").write_bytes(encode_png(image))
                lines.append(f"{person}\\{video}\\{video}.{f}.png,0,{3 + f},4,{2 + video},3,0.0,1")
        if person in boxes_for:
            (root / "frame_images_DB" / f"{person}.labeled_faces.txt").write_text("\n".join(lines) + "\n")


SPLITS = """is same , first name,split number, pair number ,second name

1, Ann_A/0, 1, 1, Ann_A/1
0, Ann_A/1, 1, 2, Bob_B/0
0,Bob_B/0 ,2,3,Ann_A/0
"""


@pytest.fixture
def handmade(tmp_path):
    _write_frames(tmp_path)
    (tmp_path / "splits.txt").write_text(SPLITS)
    return tmp_path


def _mean_colour(images):
    return images.to(torch.float64).mean((2, 3))


def test_reader_on_handmade_files(handmade):
    protocol = read_ytf(handmade)
    assert [v.name for v in protocol.videos] == ["Ann_A/0", "Ann_A/1", "Bob_B/0"]
    assert [f.name for f in protocol.videos[0].frames] == [f"0.{f}.png" for f in range(1, 13)]
    assert protocol.first.tolist() == [0, 1, 2] and protocol.second.tolist() == [1, 2, 0]
    assert protocol.issame.tolist() == [True, False, False]
    assert protocol.split.tolist() == [1, 1, 2]
    boxes = protocol.videos[1].boxes
    assert boxes.shape == (3, 4) and boxes[:, 0].tolist() == [4, 5, 6] and boxes[0, 2:].tolist() == [3, 3]
    assert protocol.videos[2].boxes is None  # Bob_B has no labeled_faces.txt


def test_splits_columns_follow_the_header(tmp_path):
    path = tmp_path / "splits.txt"
    path.write_text("split number, pair number, first name, second name, is same\n3, 1, X/0, Y/1, 0\n")
    assert read_ytf_splits(path) == [(3, "X/0", "Y/1", False, 2)]


def test_video_chunks_resample_and_cut():
    chunks = video_chunks([100, 7, 40], frames_per_set=10, sets_per_video=4)
    assert len(chunks) == 12 and all(len(c) == 10 for c in chunks)
    for v, count in enumerate([100, 7, 40]):
        frames = torch.cat(chunks[4 * v:4 * v + 4])
        assert torch.equal(frames, resample_frames(count, 40))
        assert frames.min() >= 0 and frames.max() < count
    assert bool((torch.cat(chunks[:4]).diff() > 0).all())            # long video: distinct frames
    repeats = torch.cat(chunks[4:8]).bincount(minlength=7).tolist()
    assert set(repeats) == {5, 6}                                     # short video: each frame 5 or 6 times
    assert video_chunks([], 10, 4) == []


def test_embed_videos_averages_the_resampled_frames(handmade):
    protocol = read_ytf(handmade)
    sizes = []

    def set_fn(members, offsets):
        sizes.extend(offsets.diff().tolist())
        return mean_pooling(_mean_colour)(members, offsets)

    features = embed_videos(protocol.videos, set_fn, frames_per_set=2, sets_per_video=3, max_images=4)
    assert sizes == [2] * 9                                   # 3 videos x n_avg sets of N frames
    for v, (person, video) in enumerate([("Ann_A", 0), ("Ann_A", 1), ("Bob_B", 0)]):
        frames = resample_frames(len(protocol.videos[v].frames), 6) + 1   # files are numbered from 1
        expected = torch.stack([_colour(person, video, int(f)) for f in frames]).mean(0)
        torch.testing.assert_close(features[v], (expected / expected.norm()).float())


def test_transform_receives_each_frames_box(handmade):
    protocol = read_ytf(handmade)
    seen = []

    def transform(image, box):
        seen.append(None if box is None else box.tolist())
        return image

    embed_videos(protocol.videos[1:], mean_pooling(_mean_colour), 3, 1, transform=transform)
    assert seen[:3] == [[4, 4, 3, 3], [5, 4, 3, 3], [6, 4, 3, 3]] and seen[3:] == [None] * 3


def test_verify_videos_uses_the_splits_as_folds(handmade):
    protocol = read_ytf(handmade)
    features = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    with pytest.warns(UserWarning, match="VAL or FAR is undefined"):   # split 2 holds no genuine pair
        result = verify_videos(features, protocol)
    # split 1 is tested with the threshold of split 2 (one impostor pair: threshold 0, all "different"),
    # split 2 with the threshold of split 1 (which separates its pairs)
    assert result.folds == 2 and result.fold_accuracies.tolist() == [0.5, 1.0] and result.auc == 1.0
    with pytest.raises(ValueError, match=r"features: expected \(3, d\)"):
        verify_videos(features[:2], protocol)


HEADER = "split number, first name, second name, is same\n"


@pytest.mark.parametrize("text, message", [
    (HEADER + "1, Ann_A/0, Zed_Z/4, 0\n", r"splits.txt:2: unknown video 'Zed_Z/4'"),
    (HEADER + "1, Ann_A/0, Ann_A/1, 2\n", r"splits.txt:2: is same must be 1 or 0"),
    (HEADER + "\n1, Ann_A/0, Ann_A/1\n", r"splits.txt:3: expected at least 4"),
    (HEADER + "1, Ann_A, Ann_A/1, 1\n", r"splits.txt:2: first name must be"),
    ("x, first name, second name, is same\nA, Ann_A/0, Ann_A/1, 1\n", r"splits.txt:2: split number must be"),
    ("1, 1, Ann_A/0, Ann_A/1, 1\n", r"splits.txt:1: expected a header line"),
    ("", r"splits.txt: empty file"),
])
def test_bad_splits_name_the_file_and_line(handmade, text, message):
    (handmade / "splits.txt").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_ytf(handmade)


def test_bad_frame_folders_and_boxes_are_named(handmade):
    (handmade / "frame_images_DB" / "Bob_B" / "0" / "0.1.png").unlink()
    (handmade / "frame_images_DB" / "Bob_B" / "0" / "0.2.png").unlink()
    with pytest.raises(ValueError, match=r"splits.txt:4: video 'Bob_B/0' has no frames"):
        read_ytf(handmade)
    (handmade / "splits.txt").write_text(HEADER + "1, Ann_A/0, Ann_A/1, 1\n")
    labels = handmade / "frame_images_DB" / "Ann_A.labeled_faces.txt"
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(ValueError, match=r"Ann_A.labeled_faces.txt: no box for frame Ann_A/0/0.1.png"):
        read_ytf(handmade)
    labels.write_text("\n".join([lines[0], "Ann_A\\0\\0.2.png,0,x,4,3,3"]) + "\n")
    with pytest.raises(ValueError, match=r"Ann_A.labeled_faces.txt:2: expected"):
        read_ytf(handmade)


def test_crop_face_cuts_the_square_box_and_pads_outside():
    image = torch.arange(3 * 10 * 12, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(3, 10, 12)
    crop = crop_face(image, torch.tensor([5.0, 6.0, 4.0, 2.0]), size=4)   # side 4, left 3, top 4
    assert torch.equal(crop, image[:, 4:8, 3:7])
    corner = crop_face(image, torch.tensor([0.0, 0.0, 4.0, 4.0]), size=4)  # left = top = -2
    assert torch.equal(corner[:, 2:, 2:], image[:, :2, :2]) and not corner[:, :2].any() and not corner[:, :, :2].any()
    assert crop_face(image, None, size=5).shape == (3, 5, 5)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    world = SyntheticFaceWorld(seed=0, size=32)
    return write_ytf_like(world, tmp_path_factory.mktemp("ytf"), splits=2, pairs_per_split=2, identities_per_split=2,
                          videos_per_identity=2, frames_per_video=(3, 5), progress=False)


def test_reader_on_the_synthetic_writer(synthetic):
    protocol = read_ytf(synthetic)
    truth = json.loads((synthetic / "pyfacex_ground_truth.json").read_text())
    assert len(protocol.issame) == 8 and protocol.split.tolist() == [1] * 4 + [2] * 4
    assert protocol.issame.tolist() == [True, True, False, False] * 2   # per split: same pairs, then different
    for p in range(8):
        a, b = protocol.videos[protocol.first[p]].name, protocol.videos[protocol.second[p]].name
        assert bool(protocol.issame[p]) == (a.split("/")[0] == b.split("/")[0])
    for video in protocol.videos:
        stored = sorted(k for k in truth["images"] if k.startswith(f"frame_images_DB/{video.name}/"))
        assert len(video.frames) == len(stored) and video.boxes.shape == (len(stored), 4)
        assert [truth["images"][f"frame_images_DB/{video.name}/{f.name}"]["frame"] for f in video.frames] == \
            list(range(len(stored)))                        # frame order is the video's order


def test_evaluate_ytf_equals_a_hand_written_pipeline(synthetic):
    transform = functools.partial(crop_face, size=16)
    embed = lambda x: x.to(torch.float64).reshape(len(x), -1) / 255 - 0.5  # noqa: E731
    result = evaluate_ytf(synthetic, mean_pooling(embed), frames_per_set=2, sets_per_video=2, transform=transform,
                          max_images=3)
    protocol = read_ytf(synthetic)
    features = []
    for video in protocol.videos:
        frames = resample_frames(len(video.frames), 4).tolist()
        images = torch.stack([transform(decode_image(video.frames[f].read_bytes()), video.boxes[f]) for f in frames])
        features.append(embed(images).mean(0))
    features = torch.nn.functional.normalize(torch.stack(features), dim=1)
    expected = verify_pairs(features[protocol.first], features[protocol.second], protocol.issame,
                            fold_ids=protocol.split)
    assert result.folds == 2
    assert result.accuracy == pytest.approx(expected.accuracy) and result.auc == pytest.approx(expected.auc)
    torch.testing.assert_close(result.fold_accuracies, expected.fold_accuracies)
