"""Periodic evaluation runs a set model's own set function on template protocols (eval.set_function)."""
import pytest
import torch

from pyfacex.data.synthetic import SyntheticFaceWorld
from pyfacex.data.synthetic.protocols import write_ijba_like
from pyfacex.eval import evaluate_protocol, tar_column
from pyfacex.train import config_from_dict, create_trainer

from .conftest import TINY_IRESNET


@pytest.fixture(scope="module")
def ijba(tmp_path_factory):
    return write_ijba_like(SyntheticFaceWorld(seed=0, size=32), tmp_path_factory.mktemp("ijba"), subjects=4, splits=2,
                           test_subjects=3, stills=(2, 3), videos=(0, 0), impostors_per_template=2, progress=False)


def lfenet_trainer(tiny_faces, output, ijba, set_function):
    config = config_from_dict({
        "trainer": "sets", "model": {"name": "lfenet_irse50", "kwargs": {"backbone_kwargs": dict(TINY_IRESNET)}},
        "data": {"train": str(tiny_faces), "batch_size": 8, "num_workers": 0, "image_size": 32, "augment": [],
                 "sets_per_batch": 2, "set_size": 3},
        "eval": {"protocols": [f"ijba={ijba}"], "flip": False, "set_function": set_function},
        "max_steps": 1, "device": "cpu", "progress": False, "output": str(output)})
    trainer = create_trainer(config)
    model = trainer.modules["model"]
    with torch.no_grad():
        torch.nn.init.normal_(model.lit.value.weight, std=2.0)   # a LIT that is not the identity
    return trainer, model


@pytest.mark.parametrize("set_function", ["auto", "model"])
def test_periodic_evaluation_runs_the_lit_across_each_template(tiny_faces, tmp_path, ijba, set_function):
    trainer, model = lfenet_trainer(tiny_faces, tmp_path, ijba, set_function)
    sizes = []
    own = model.set_representation

    def spy(images, offsets):
        sizes.extend(offsets.diff().tolist())
        return own(images, offsets)

    model.set_representation = spy
    metrics, primary = trainer.metrics()
    assert primary == f"ijba/{tar_column(1e-3)}"
    assert sizes and max(sizes) > 1                # whole templates, not images one by one
    del model.set_representation
    expected = evaluate_protocol(f"ijba={ijba}", trainer.embedder(), set_model=model, set_function="model",
                                 flip=False, image_size=32)
    assert metrics == {f"ijba/{k}": v for k, v in expected.metrics.items()}


def test_periodic_evaluation_with_the_mean(tiny_faces, tmp_path, ijba):
    trainer, model = lfenet_trainer(tiny_faces, tmp_path, ijba, "mean")
    model.set_representation = lambda *args: pytest.fail("eval.set_function: mean must not run the set function")
    metrics, _ = trainer.metrics()
    del model.set_representation
    expected = evaluate_protocol(f"ijba={ijba}", trainer.embedder(), set_function="mean", flip=False, image_size=32)
    assert metrics == {f"ijba/{k}": v for k, v in expected.metrics.items()}
