"""Tiny model files and synthetic photos shared by the embed tests and the embed/compare CLI tests
(each loads this file under the module name ``pyfacex_embed_test_fixtures``, so it is imported once)."""
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from pyfacex.align import five_points
from pyfacex.backbones.iresnet import iresnet18
from pyfacex.data.codec import encode_png
from pyfacex.data.synthetic import SyntheticFaceWorld
from pyfacex.train.checkpoint import save_model

TINY = {"layers": [1, 1, 1, 1], "widths": [4, 4, 8, 8], "num_features": 8}


def write_tiny_model(path: Path, image_size: int, seed: int = 0) -> Path:
    """An untrained iResNet of a few thousand weights at ``image_size`` whose BatchNorm statistics are
    those of synthetic faces: every layer's output is standardised on faces, so different faces get
    clearly different embeddings (with the initial statistics they all come out nearly alike)."""
    torch.manual_seed(seed)
    kwargs = {**TINY, "input_size": image_size}
    model = iresnet18(**kwargs)
    world = SyntheticFaceWorld(seed=seed + 100, size=image_size)
    faces = world.render(world.identities("train", 16), torch.arange(16)).images
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None            # cumulative average: the statistics of this one batch
    with torch.no_grad():
        model.train()(faces.float() / 127.5 - 1)
    return save_model(path, model.eval(), name="iresnet18", kwargs=kwargs, image_size=image_size)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny tensors gain nothing from intra-op threads on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def model_112(tmp_path_factory) -> Path:
    """A tiny model taking 112×112 faces (aligned at 112 directly)."""
    return write_tiny_model(tmp_path_factory.mktemp("models") / "m112.pt", 112)


@pytest.fixture(scope="session")
def model_32(tmp_path_factory) -> Path:
    """A tiny model taking 32×32 faces (aligned at 112, then resized)."""
    return write_tiny_model(tmp_path_factory.mktemp("models") / "m32.pt", 32)


@dataclass
class Photos:
    """Loose synthetic photos (whole heads, 128×128) and their landmarks, as files and tensors."""

    folder: Path
    names: list[str]
    images: torch.Tensor          # uint8 (N, 3, 128, 128), what the PNG files hold exactly
    landmarks68: torch.Tensor     # (N, 68, 2)
    landmarks5: torch.Tensor      # (N, 5, 2)


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Photos:
    """Five loose photos of five test identities, written as lossless PNG (decoding gives the tensors)."""
    world = SyntheticFaceWorld(seed=0, size=128, framing="landmark")
    batch = world.render(world.identities("test", 5), torch.arange(5))
    folder = tmp_path_factory.mktemp("photos")
    names = [f"person{i}.png" for i in range(5)]
    for name, image in zip(names, batch.images):
        (folder / name).write_bytes(encode_png(image))
    return Photos(folder, names, batch.images, batch.landmarks, five_points(batch.landmarks))


@pytest.fixture(scope="session")
def crops(tmp_path_factory) -> tuple[Path, torch.Tensor]:
    """Six aligned 112×112 crops (insightface framing) as PNG files in nested folders, and the tensors."""
    world = SyntheticFaceWorld(seed=1, size=112)
    images = world.render(world.identities("test", 3).repeat_interleave(2), torch.arange(6)).images
    folder = tmp_path_factory.mktemp("crops")
    for i, image in enumerate(images):
        target = folder / f"id{i // 2}" / f"{i % 2}.png"
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(encode_png(image))
    return folder, images

