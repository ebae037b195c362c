"""Every registered model builds small through create_model and runs forward and backward on CPU."""
import pytest
import torch
from torch import nn

from pyfacex.models import create_model, list_models

TINY_IRESNET = dict(layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), num_features=32, input_size=32)
IMAGES = torch.randn(6, 3, 32, 32)
OFFSETS = torch.tensor([0, 2, 6])
LABELS = torch.tensor([0, 0, 1, 1, 2, 2])


def run_set_model(model):            # LFENet: sets of images, loss on every image embedding
    loss, embeddings = model(IMAGES, OFFSETS, LABELS)
    assert embeddings.shape == (6, 32)
    return loss


def run_image_model(model):          # LGAF: images, margin loss on the fused embedding
    loss, embedding = model(IMAGES, LABELS)
    assert embedding.shape == (6, 32)
    return loss


def run_memory_model(model):         # QAFace / VPL: the iteration decides injection
    return model(IMAGES, LABELS, iteration=0)


def run_fanface(model):            # FAN-Face: a frozen FAN's heatmaps and features into the FRN
    loss, embedding = model(IMAGES, LABELS)
    assert embedding.shape == (6, 32)
    return loss


def run_aggregation(model):          # Face Aggregation: one image per set, generator loss
    positives, negatives = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    assert model.aggregate(IMAGES, OFFSETS).shape == (2, 3, 32, 32)
    return model.generator_loss(IMAGES, OFFSETS, positives, negatives, torch.tensor([0, 1])).loss


FAMILIES = {
    "lfenet": (dict(backbone_kwargs=TINY_IRESNET, num_classes=3), run_set_model),
    "lgaf": (dict(backbone_kwargs=TINY_IRESNET, num_classes=3), run_image_model),
    "qaface": (dict(num_classes=3, embedding_size=32, start_iteration=0,
                    **{k: v for k, v in TINY_IRESNET.items() if k != "num_features"}), run_memory_model),
    "vpl": (dict(num_classes=3, embedding_size=32, start_iteration=0,
                 **{k: v for k, v in TINY_IRESNET.items() if k != "num_features"}), run_memory_model),
    "fanface": (dict(frn_kwargs=TINY_IRESNET, embedding_size=32, fan_size=64, num_classes=3,
                     fan_kwargs=dict(width=16, depth=2)), run_fanface),
    "faceagg": (dict(num_classes=3, widths=(4, 8, 8, 8, 8), discriminator_widths=(4, 4, 4, 4), input_size=32,
                     embedding_size=8, extractor=nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 8))),
                run_aggregation),
}


def test_every_family_is_covered():
    assert {name.split("_")[0] for name in list_models()} <= set(FAMILIES)


@pytest.mark.parametrize("name", list_models())
def test_builds_small_and_trains(name):
    overrides, run = FAMILIES[name.split("_")[0]]
    torch.manual_seed(0)
    model = create_model(name, **overrides)
    model.train()
    loss = run(model)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), name
