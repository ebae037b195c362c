"""The traceable embedder: LFENet's single-image form equals its set op on sets of one."""
import pytest
import torch

from pyfacex.export import SingleImageLFENet, exportable_embedder
from pyfacex.models import create_model
from pyfacex.ops import use_backend

TINY = dict(layers=(1, 1, 1, 1), widths=(4, 8, 8, 16), num_features=16, input_size=32)


@pytest.mark.parametrize("relation", ["softmax_b", "softmax_a", "scaled_dot"])
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_single_image_lfenet_equals_sets_of_one(relation, backend):
    torch.manual_seed(0)
    model = create_model("lfenet_r50", backbone_kwargs=TINY, relation=relation, segment=2, scale=0.7).eval()
    with torch.no_grad():
        model.lit.value.weight.normal_(0.0, 1.0)   # V = 0 would make the LIT the identity
        for name in ("query", "key"):
            if hasattr(model.lit, name):
                getattr(model.lit, name).weight.normal_(0.0, 2.0)   # peaked attention, far from uniform
                getattr(model.lit, name).bias.normal_(0.0, 1.0)
    faces = torch.rand(5, 3, 32, 32) * 2 - 1
    single = exportable_embedder(model)
    assert isinstance(single, SingleImageLFENet)
    with torch.no_grad(), use_backend(backend):
        expected = model.embed(faces, torch.arange(6))
        torch.testing.assert_close(single(faces), expected, rtol=1e-4, atol=1e-5)
        # the LIT acts: without it the embeddings differ
        plain = model.backbone.head(model.backbone(faces, return_feature_map=True))
        assert (plain - expected).norm() > 0.1 * expected.norm()
        # each face alone gives its row: no attention across the batch
        torch.testing.assert_close(single(faces[2:3]), expected[2:3], rtol=1e-4, atol=1e-5)


def test_exportable_embedder_switches_autocast_off_and_freezes():
    from pyfacex.backbones.iresnet import iresnet18

    model = iresnet18(**TINY, fp16=True)
    embedder = exportable_embedder(model)
    assert embedder is model and model.fp16 is False and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        assert embedder(torch.rand(2, 3, 32, 32)).dtype == torch.float32
    with pytest.raises(ValueError, match="channel_order must be one of"):
        exportable_embedder(iresnet18(**TINY), channel_order="GRB")
