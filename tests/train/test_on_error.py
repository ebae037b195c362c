"""``data.on_error``: an unreadable training image is skipped (the batch keeps its size), its error
logged with file and byte, counted across DataLoader workers, and the run stops past ``max_skipped``."""
import json
import shutil

import pytest
import torch

from pyfacex.data import DecodeError, RecordDataset, encode_png
from pyfacex.train import create_trainer
from pyfacex.train.data import SkippedImagesError

from .test_trainer import make_config

IDENTITIES, PER_IDENTITY = 4, 4


@pytest.fixture
def folder(tmp_path):
    """An image folder of 4 identities × 4 faces at 32 px (16 images: two batches of 8)."""
    generator = torch.Generator().manual_seed(0)
    for identity in range(IDENTITIES):
        (tmp_path / "faces" / f"id{identity}").mkdir(parents=True)
        for image in range(PER_IDENTITY):
            pixels = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=generator)
            (tmp_path / "faces" / f"id{identity}" / f"{image}.png").write_bytes(encode_png(pixels))
    return tmp_path / "faces"


def _corrupt(folder, *names):
    for name in names:
        (folder / name).write_bytes(b"not an image")


def _events(output, event):
    return [record for record in map(json.loads, (output / "log.jsonl").read_text().splitlines())
            if record["event"] == event]


@pytest.mark.parametrize("workers", [0, 2])
def test_skipped_images_are_logged_and_counted_per_epoch(folder, tmp_path, workers):
    _corrupt(folder, "id2/1.png")
    config = make_config(folder, tmp_path / "run", **{"data.on_error": "skip", "data.max_skipped": 0.1,
                                                      "data.num_workers": workers, "epochs": 2})
    trainer = create_trainer(config)
    trainer.fit()
    assert trainer.step == 4  # 2 epochs of 2 full batches: every batch kept its size
    # every epoch reads each of the 16 images once: the bad one once per epoch, in whichever worker
    assert [(e["epoch"], e["skipped"]) for e in _events(tmp_path / "run", "data")] == [(1, 1), (2, 1)]
    lines = (tmp_path / "run" / "skipped_images.log").read_text().splitlines()
    assert len(lines) == 2 and all("id2/1.png" in line and "ImageFolderDataset skipped a bad item" in line
                                   for line in lines)


def test_past_max_skipped_the_run_stops_naming_the_log(folder, tmp_path):
    _corrupt(folder, "id0/0.png", "id3/2.png")  # 2 of 16 images: more than 0.1 × 16 = 1.6
    config = make_config(folder, tmp_path / "run", **{"data.on_error": "skip", "data.max_skipped": 0.1})
    with pytest.raises(SkippedImagesError, match=r"2 unreadable images skipped in epoch 1, more than "
                                                 r"data.max_skipped = 0.1 of the 16 training images; .*"
                                                 r"skipped_images.log"):
        create_trainer(config).fit()


def test_by_default_a_bad_image_stops_the_run_naming_it(folder, tmp_path):
    _corrupt(folder, "id1/3.png")
    with pytest.raises(DecodeError, match=r"id1/3.png"):
        create_trainer(make_config(folder, tmp_path / "run")).fit()
    assert not (tmp_path / "run" / "skipped_images.log").exists()


def test_a_bad_record_is_skipped_too(tiny_faces, tmp_path):
    records = tmp_path / "records"
    shutil.copytree(tiny_faces, records)
    offset = int(RecordDataset(records)._offsets[5])
    with open(records / "train.rec", "r+b") as rec:
        rec.seek(offset + 8 + 24)
        rec.write(b"garbage!")  # the image bytes of record 5, not its header: the labels still read
    config = make_config(records, tmp_path / "run", **{"data.on_error": "skip", "data.max_skipped": 0.05})
    create_trainer(config).fit()
    assert [e["skipped"] for e in _events(tmp_path / "run", "data")] == [1]  # 48 images, 6 full batches
    assert f"at byte {offset}" in (tmp_path / "run" / "skipped_images.log").read_text()
