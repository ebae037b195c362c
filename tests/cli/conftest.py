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
