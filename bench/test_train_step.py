"""Training throughput on the CPU: one SGD step of an iResNet with the fused ArcFace loss, and what the
big-run switches (``channels_last``, ``compile``, ``grad_checkpoint``; configs/README.md) do to it.

A step is what the classification trainer runs per batch, without data loading (a fixed batch of
random images): forward, ``pyfacex.nn.ArcFace`` (s 64, m 0.5, the fused margin loss over 1000
classes), backward, SGD with momentum 0.9 and weight decay 5e-4. Each switch is applied as the
trainer applies it (``Trainer._big_run_options``): ``checkpoint_stages(model)``, the modules and the
batch in ``torch.channels_last``, ``model.compile()`` in place. Images per second = batch / median.
``peak (MiB)`` is the peak of torch's CPU allocator during one step (activations kept for the
backward above all): the memory ``grad_checkpoint`` saves.

Groups: ``train_step|tiny-32px-B64`` (the tests' 4-block iResNet on 32×32 faces) and
``train_step|iresnet50-112px-B16`` (insightface's r50 at 112×112, a batch a 2-core CPU steps in a
few seconds). Under ``--benchmark-disable`` (CI) only the tiny model runs, at batch 8.
"""
from __future__ import annotations

import functools

import pytest
import torch

import pyfacex.nn as pnn
from common import first_call_or_skip, run
from pyfacex.backbones.iresnet import iresnet18, iresnet50
from pyfacex.train.memory import checkpoint_stages

# name: (backbone, its embedding size, image pixels, batch size)
MODELS = {
    "tiny-32px": (lambda: iresnet18(layers=[1, 1, 1, 1], widths=[8, 8, 16, 16], num_features=16, input_size=32),
                  16, 32, 64),
    "iresnet50-112px": (iresnet50, 512, 112, 16),
}
VARIANTS = ("eager", "channels_last", "compile", "compile+channels_last", "grad_checkpoint")
CLASSES = 1000


@functools.cache
def batch(size: int, pixels: int):
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(size, 3, pixels, pixels, generator=gen) * 2 - 1
    return images, torch.randint(0, CLASSES, (size,), generator=gen)


def make_step(model_name: str, variant: str, size: int):
    """A closure running one training step of ``model_name`` with ``variant``'s switches, and the batch size."""
    build, features, pixels, default_size = MODELS[model_name]
    size = size or default_size
    torch.manual_seed(0)
    model = build().train()
    head = pnn.ArcFace(features, CLASSES)
    images, labels = batch(size, pixels)
    if variant == "grad_checkpoint":
        checkpoint_stages(model)
    if "channels_last" in variant:
        model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    if "compile" in variant:
        model.compile()
    optimizer = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=0.1, momentum=0.9, weight_decay=5e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = head(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss.detach()
    return step, size


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("model_name", list(MODELS))
def test_train_step(benchmark, model_name, variant):
    if benchmark.disabled and model_name != "tiny-32px":
        pytest.skip("smoke run (--benchmark-disable): the tiny model only")
    step, size = make_step(model_name, variant, 8 if benchmark.disabled else 0)
    if "compile" in variant:
        first_call_or_skip(step, f"torch.compile of {model_name}")
    rounds = 5 if model_name == "iresnet50-112px" else None  # seconds per step: a fixed count, no calibration
    loss = run(benchmark, step, group=f"train_step|{model_name}-B{size}", impl=variant, rounds=rounds)
    benchmark.extra_info["batch"] = size
    assert torch.isfinite(loss)
