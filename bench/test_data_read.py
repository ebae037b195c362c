"""Reading training images: insightface RecordIO against an image folder, and the JPEG decoders.

Groups, implementations side by side:

- ``read_decode|...``: one epoch over the same 2000 JPEGs (112×112, quality 95, 20 identities)
  through a DataLoader with 2 forked, persistent workers, batches of 100: ``pyfacex-recordio``
  (:class:`~pyfacex.data.RecordDataset`, ``os.pread`` at the index's offsets) against
  ``image-folder`` (:class:`~pyfacex.data.ImageFolderDataset`, one file opened per image). Both
  decode with :func:`~pyfacex.data.decode_image`, so the difference is the file access. ``-warm``:
  the files are in the page cache (written just before), as after a first epoch on a machine
  with RAM to spare; ``-cold``: their pages are evicted (``posix_fadvise(DONTNEED)``, untimed)
  before every epoch, so every read goes to the disk, as for a data set larger than the RAM.
- ``decode|...``: 100 of those JPEGs decoded to RGB in this process by ``simplejpeg``, ``pillow``
  (``Image.open`` + ``convert``), ``cv2`` (``imdecode`` + BGR->RGB) and ``pyfacex-decode_image``
  (simplejpeg plus the (3, H, W) tensor view): why :mod:`pyfacex.data.codec` uses simplejpeg.

``extra_info["images_per_s"]`` holds the throughput of the median round.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader

from common import run
from pyfacex.data.codec import decode_image, encode_jpeg
from pyfacex.data.folder import ImageFolderDataset
from pyfacex.data.record_dataset import RecordDataset
from pyfacex.data.record_writer import write_record_dataset

IDENTITIES, PER_IDENTITY, SIZE, QUALITY = 20, 100, 112, 95
N_IMAGES = IDENTITIES * PER_IDENTITY
BATCH, DECODE_BATCH = 100, 100
COLD_ROUNDS = 5  # each cold epoch rereads 19 MB from the disk


@dataclass(frozen=True)
class Faces:
    folder: Path  # folder/<identity>/<n>.jpg
    records: Path  # train.rec, train.idx, property holding the same JPEG bytes
    jpegs: list[bytes]


def textured(count: int, generator: torch.Generator) -> torch.Tensor:
    """uint8 (count, 3, 112, 112) images with structure at several scales, so that JPEG sizes (about
    9 KB at quality 95) and decode times are those of face crops, not of flat or pure-noise images.
    Made in batches: per-image calls of torch's 2-thread ops stall whenever the other core is busy."""
    images = torch.randn(count, 3, SIZE, SIZE, generator=generator) * 6.0 + 128
    for cells, amplitude in ((4, 90.0), (14, 40.0), (56, 20.0)):
        coarse = torch.randn(count, 3, cells, cells, generator=generator) * amplitude
        images += F.interpolate(coarse, size=(SIZE, SIZE), mode="bicubic", align_corners=False)
    return images.round().clamp(0, 255).to(torch.uint8)


@pytest.fixture(scope="session")
def faces(tmp_path_factory) -> Faces:
    root = tmp_path_factory.mktemp("faces")
    generator = torch.Generator().manual_seed(0)
    jpegs = []
    for identity in range(IDENTITIES):
        (root / "folder" / f"id{identity:03d}").mkdir(parents=True)
        for n, image in enumerate(textured(PER_IDENTITY, generator)):
            jpegs.append(encode_jpeg(image, QUALITY))
            (root / "folder" / f"id{identity:03d}" / f"{n:03d}.jpg").write_bytes(jpegs[-1])
    write_record_dataset(root / "records", root / "folder", encoding="raw")
    return Faces(root / "folder", root / "records", jpegs)


def _images_per_s(benchmark, images: int) -> None:
    if not benchmark.disabled:
        benchmark.extra_info["images_per_s"] = round(images / benchmark.stats.stats.median)


DATASETS = {"pyfacex-recordio": lambda faces: RecordDataset(faces.records),
            "image-folder": lambda faces: ImageFolderDataset(faces.folder)}


def _evict(paths: list[Path]) -> tuple[tuple, dict]:
    """Drops the files' pages from the page cache (the next read goes to the disk)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return (), {}


@pytest.mark.parametrize("cache", ["warm", "cold"])
@pytest.mark.parametrize("impl", list(DATASETS))
def test_read_decode(benchmark, faces, impl, cache):
    if cache == "cold" and not hasattr(os, "posix_fadvise"):
        pytest.skip("evicting files from the page cache needs os.posix_fadvise")
    dataset = DATASETS[impl](faces)
    loader = DataLoader(dataset, batch_size=BATCH, num_workers=2, persistent_workers=True,
                        multiprocessing_context="fork")

    def epoch() -> int:
        return sum(len(labels) for _, labels in loader)

    epoch()  # starts the persistent workers: their start-up is not a per-epoch cost
    files = [faces.records / "train.rec"] if impl == "pyfacex-recordio" else dataset.samples
    setup = (lambda: _evict(files)) if cache == "cold" else None
    group = f"read_decode|{N_IMAGES}x{SIZE}-q{QUALITY}-dl2-{cache}"
    assert run(benchmark, epoch, group=group, impl=impl, setup=setup, rounds=COLD_ROUNDS if setup else None) == N_IMAGES
    _images_per_s(benchmark, N_IMAGES)


def _pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def _cv2(data: bytes) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


DECODERS = {
    "pyfacex-decode_image": decode_image,
    "simplejpeg": lambda data: simplejpeg.decode_jpeg(data, colorspace="RGB"),
    "pillow": _pillow,
    "cv2": _cv2,
}


@pytest.mark.parametrize("impl", list(DECODERS))
def test_decode(benchmark, faces, impl):
    if impl == "cv2":
        pytest.importorskip("cv2", reason="opencv is a comparison only, not a pyfacex dependency")
    decode, jpegs = DECODERS[impl], faces.jpegs[:DECODE_BATCH]
    reference = simplejpeg.decode_jpeg(jpegs[0], colorspace="RGB")
    first = np.asarray(decode(jpegs[0]))
    hwc = np.moveaxis(first, 0, -1) if first.shape[0] == 3 else first
    # the decoders compared give the same RGB image, up to their IDCTs' rounding
    assert np.abs(hwc.astype(int) - reference.astype(int)).max() <= 3

    def decode_all() -> int:
        return len([decode(data) for data in jpegs])

    run(benchmark, decode_all, group=f"decode|{SIZE}x{SIZE}-q{QUALITY}-x{DECODE_BATCH}", impl=impl)
    _images_per_s(benchmark, DECODE_BATCH)
