"""Options for big runs: gradient checkpointing of the backbone stages (the same training, BatchNorm
statistics included), channels-last memory, and torch.compile (graph-break-free models, keys kept)."""
import pytest
import torch

from pyfacex.backbones import iresnet50
from pyfacex.models import create_model
from pyfacex.train import create_trainer
from pyfacex.train.memory import checkpoint_stages

from .conftest import TINY_IRESNET
from .test_trainer import make_config, states

LGAF = {"model.name": "lgaf_r50", "model.kwargs": {"backbone_kwargs": {**TINY_IRESNET, "dropout": 0.3}}}


def _assert_close_states(a: dict, b: dict, rtol: float = 1e-4, atol: float = 1e-5):
    assert a.keys() == b.keys()
    for key in a:
        if a[key].is_floating_point():
            torch.testing.assert_close(a[key], b[key], rtol=rtol, atol=atol, msg=lambda m, key=key: f"{key}: {m}")
        else:
            assert torch.equal(a[key], b[key]), key  # num_batches_tracked: a second BN update would show here


@pytest.mark.parametrize("values", [{}, LGAF], ids=["iresnet", "lgaf"])
def test_grad_checkpoint_trains_as_without_it(tiny_faces, tmp_path, values):
    plain = create_trainer(make_config(tiny_faces, tmp_path / "plain", max_steps=3, **values))
    plain.fit()
    checkpointed = create_trainer(make_config(tiny_faces, tmp_path / "ckpt", max_steps=3, grad_checkpoint=True,
                                              **values))
    checkpointed.fit()
    _assert_close_states(states(plain), states(checkpointed))


def test_checkpoint_stages_finds_nested_stages_and_keeps_the_keys():
    model = create_model("lgaf_r50", backbone_kwargs=TINY_IRESNET)
    keys = list(model.state_dict())
    assert checkpoint_stages(model) == [f"backbone.layer{i}" for i in range(1, 5)]
    assert list(model.state_dict()) == keys
    with pytest.raises(ValueError, match="grad_checkpoint: Linear has no backbone stage named layer1"):
        checkpoint_stages(torch.nn.Linear(2, 2))


def test_checkpointed_stages_keep_fewer_activations():
    """What the backward pass holds: the saved tensors of one training forward, counted by autograd's
    hooks (deterministic, unlike a memory reading)."""
    def saved_bytes(model):
        total = 0

        def pack(tensor):
            nonlocal total
            total += tensor.numel() * tensor.element_size()
            return tensor
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            model(torch.randn(4, 3, 32, 32))
        return total
    model = iresnet50(**TINY_IRESNET).train()
    plain = saved_bytes(model)
    checkpoint_stages(model)
    assert saved_bytes(model) < plain / 2


def test_channels_last_trains_as_without_it(tiny_faces, tmp_path):
    plain = create_trainer(make_config(tiny_faces, tmp_path / "plain", max_steps=2))
    plain.fit()
    nhwc = create_trainer(make_config(tiny_faces, tmp_path / "nhwc", max_steps=2, channels_last=True))
    assert nhwc.modules["model"].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    nhwc.fit()
    # NHWC convolutions sum in another order: after two steps at lr 0.05 weights differ by ~1e-5
    _assert_close_states(states(plain), states(nhwc), rtol=1e-3, atol=1e-4)


def test_compile_is_in_place_and_the_models_have_no_graph_breaks(tiny_faces, tmp_path):
    trainer = create_trainer(make_config(tiny_faces, tmp_path, compile=True))
    assert trainer.modules["model"]._compiled_call_impl is not None
    assert all(not key.startswith("_orig_mod") for key in trainer.modules["model"].state_dict())
    for model in (iresnet50(**TINY_IRESNET), create_model("lgaf_r50", backbone_kwargs=TINY_IRESNET)):
        explanation = torch._dynamo.explain(model.train())(torch.randn(2, 3, 32, 32))
        assert explanation.graph_break_count == 0, explanation.break_reasons
