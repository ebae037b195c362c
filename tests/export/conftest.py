"""Tiny model files of every family the export covers, with weights and statistics far from their
initial values (a LIT that is not the identity, BatchNorm and LGAF norm statistics that vary), so
an exported graph that dropped or froze a part would disagree with the model.

Fixture ``kit``: image_size, faces(batch, seed), perturb(model), families, model_file(family).
A test taking a ``family`` argument runs for every family unless it parametrizes ``family`` itself.
"""
from types import SimpleNamespace

import pytest
import torch

from pyfacex.train.checkpoint import build_model, save_model

IMAGE_SIZE = 32
TINY = dict(layers=(1, 1, 1, 1), widths=(4, 8, 8, 16), num_features=16, input_size=IMAGE_SIZE)
NO_FEATURES = {k: v for k, v in TINY.items() if k != "num_features"}

# family -> (registered name or backbone, kwargs of the model file). VPL's embedder is QAFace's (the
# backbone; the two differ in the head only), so "qaface" covers both.
FAMILIES = {
    "iresnet": ("iresnet18", dict(TINY)),
    "lgaf": ("lgaf_r50", dict(backbone_kwargs=TINY)),
    "qaface": ("qaface_r50", dict(num_classes=5, embedding_size=16, **NO_FEATURES)),
    "fanface": ("fanface_r34_h2_11_bl_h2l2", dict(frn_kwargs=TINY, embedding_size=16, fan_size=32,
                                                  fan_kwargs=dict(width=8, depth=1))),
    "lfenet": ("lfenet_r50", dict(backbone_kwargs=TINY)),
}


def faces(batch: int, seed: int = 1, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Random faces (batch, 3, size, size) in [-1, 1]."""
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def perturb(model: torch.nn.Module) -> None:
    """Move the statistics and zero-initialised weights away from their initial values."""
    from pyfacex.models.lfenet import LFENet
    from pyfacex.models.lgaf import LGAF

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) and module.running_mean is not None:
                module.running_mean.copy_(torch.rand(module.running_mean.shape, generator=generator) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
        if isinstance(model, LFENet):  # V = 0 makes the LIT the identity
            model.lit.value.weight.normal_(0.0, 1.0, generator=generator)
        if isinstance(model, LGAF):  # norm statistics inside the clip range, so γ differs per face
            model.eval()
            details = model(faces(8, seed=7), return_details=True)
            for stats, features in ((model.lgf.local_stats, details.local), (model.lgf.global_stats, details.global_)):
                norms = features.norm(dim=1)
                stats.mean.copy_(norms.mean())
                stats.std.copy_(norms.std())


def pytest_generate_tests(metafunc):
    chosen = any("family" in marker.args[0] for marker in metafunc.definition.iter_markers("parametrize"))
    if "family" in metafunc.fixturenames and not chosen:
        metafunc.parametrize("family", list(FAMILIES))


@pytest.fixture(scope="session")
def kit(tmp_path_factory):
    """The helpers above, and model_file(family): a model file, built on first use."""
    folder = tmp_path_factory.mktemp("export_models")
    made = {}

    def model_file(family: str):
        if family not in made:
            name, kwargs = FAMILIES[family]
            torch.manual_seed(0)
            model = build_model(name, kwargs)
            perturb(model)
            made[family] = save_model(folder / f"{family}.pt", model, name=name, kwargs=kwargs, image_size=IMAGE_SIZE)
        return made[family]

    return SimpleNamespace(image_size=IMAGE_SIZE, faces=faces, perturb=perturb, families=FAMILIES,
                           model_file=model_file)
