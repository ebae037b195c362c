"""Face files decoded in DataLoader workers: order, sizes, and errors from the workers."""
import pytest
import torch

from pyfacex.data.codec import encode_png
from pyfacex.eval.face_files import face_batches


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces")
    generator = torch.Generator().manual_seed(0)
    paths, pixels = [], []
    for k in range(5):
        image = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8, generator=generator)
        path = folder / f"{k}.png"
        path.write_bytes(encode_png(image))
        paths.append(str(path))
        pixels.append(image)
    return paths, torch.stack(pixels)


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_come_in_file_order(images, workers):
    paths, pixels = images
    batches = list(face_batches(paths, 2, num_workers=workers))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert torch.cat(batches).equal(pixels)     # PNG is lossless: the very pixels, in order


def test_resizing_and_size_errors_name_both_files(images, tmp_path):
    paths, _ = images
    assert next(face_batches(paths, 5, size=(4, 6))).shape == (5, 3, 4, 6)
    big = tmp_path / "big.png"
    big.write_bytes(encode_png(torch.zeros(3, 9, 9, dtype=torch.uint8)))
    with pytest.raises(ValueError, match=r"big.png is \(3, 9, 9\) but .*0.png is \(3, 8, 8\)"):
        list(face_batches([paths[0], str(big)], 2))


def test_a_missing_file_fails_in_the_worker_and_names_it(images, tmp_path):
    paths, _ = images
    with pytest.raises(FileNotFoundError, match="missing.png"):
        list(face_batches([paths[0], str(tmp_path / "missing.png")], 1, num_workers=1))
    with pytest.raises(ValueError, match="num_workers"):
        list(face_batches(paths, 1, num_workers=-1))
