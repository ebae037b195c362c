"""Shared by the command-line tests: a tiny iResNet model file whose embeddings differ per image."""
import pytest
import torch

from pyfacex.backbones.iresnet import iresnet18
from pyfacex.train.checkpoint import save_model


@pytest.fixture(scope="module")
def tiny_model_file():
    """A function (path, kwargs) -> the iresnet18(**kwargs) written to path as a model file for 32-px faces, with
    non-trivial BatchNorm statistics (so embeddings differ per image); returns the model."""
    def write(path, kwargs):
        torch.manual_seed(0)
        model = iresnet18(**kwargs).eval()
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.uniform_(-0.1, 0.1)
                    module.running_var.uniform_(0.5, 1.5)
        save_model(path, model, name="iresnet18", kwargs=kwargs, image_size=32)
        return model

    return write


TINY_IRESNET = {"layers": [1, 1, 1, 1], "widths": [4, 4, 8, 8], "num_features": 8, "input_size": 32}


@pytest.fixture(scope="module")
def tiny_lfw_files(tmp_path_factory, tiny_model_file):
    """(model file, LFW-like folder): the tiny iresnet18 (8-d features, 32-px faces) and 2 folds of 3 pairs."""
    from pyfacex.data.synthetic import SyntheticFaceWorld
    from pyfacex.data.synthetic.protocols import write_lfw_like

    base = tmp_path_factory.mktemp("tiny_lfw")
    tiny_model_file(base / "model.pt", TINY_IRESNET)
    lfw = write_lfw_like(SyntheticFaceWorld(seed=0, size=32), base / "lfw", folds=2, pairs_per_fold=3,
                         identities_per_fold=3, images_per_identity=2, progress=False)
    return base / "model.pt", lfw
