"""``pyfacex eval`` throughput on the CPU: decoding workers and mixed precision (``--workers``, ``--amp``).

One LFW-like protocol of synthetic faces (image files, 112×112, 10 folds of 10 pairs: 200 images, each
embedded with its mirror image as the protocol does) scored by an iResNet-50 model file (untrained
weights: the time does not depend on them), the whole command as a user runs it:
``pyfacex eval MODEL lfw=DIR --batch-size 64 --no-cache [--workers N] [--amp]``, one timed round after a
warm-up (and the memory round of ``common.run``). Images per second = 200 / the round's time.
Implementations: ``eager`` (no workers, float32), ``workers2``, ``amp`` (bf16 autocast on
the CPU) and ``workers2-amp``.

Under ``--benchmark-disable`` (CI) a tiny iResNet on 32×32 faces and 2 folds of 3 pairs run instead.
"""
from __future__ import annotations

import functools

import pytest
import torch

from common import run
from pyfacex.backbones.iresnet import iresnet18, iresnet50
from pyfacex.cli import main
from pyfacex.data.synthetic import SyntheticFaceWorld
from pyfacex.data.synthetic.protocols import write_lfw_like
from pyfacex.train.checkpoint import save_model

IMPLS = {"eager": [], "workers2": ["--workers", "2"], "amp": ["--amp"], "workers2-amp": ["--workers", "2", "--amp"]}


@functools.cache
def files(root: str, smoke: bool):
    """(model file, protocol folder, images in the protocol), written once per session."""
    torch.manual_seed(0)
    if smoke:
        kwargs, size, name, folds, pairs = ({"layers": [1, 1, 1, 1], "widths": [4, 4, 8, 8], "num_features": 8,
                                             "input_size": 32}, 32, "iresnet18", 2, 3)
        model = iresnet18(**kwargs)
    else:
        kwargs, size, name, folds, pairs = {}, 112, "iresnet50", 10, 10
        model = iresnet50()
    save_model(f"{root}/model.pt", model.eval(), name=name, kwargs=kwargs, image_size=size)
    lfw = write_lfw_like(SyntheticFaceWorld(seed=0, size=size), f"{root}/lfw", folds=folds, pairs_per_fold=pairs,
                         identities_per_fold=pairs, images_per_identity=2, progress=False)
    return f"{root}/model.pt", str(lfw), 2 * folds * pairs


@pytest.mark.parametrize("impl", list(IMPLS))
def test_eval(benchmark, tmp_path_factory, impl):
    smoke = benchmark.disabled
    model, lfw, images = files(str(tmp_path_factory.getbasetemp() / "eval_throughput"), smoke)
    command = ["eval", model, f"lfw={lfw}", "--batch-size", "64", "--no-cache", *IMPLS[impl]]
    label = "tiny-32px" if smoke else "iresnet50-112px"
    code = run(benchmark, lambda: main(command), group=f"eval|lfw-{images}img-{label}", impl=impl, rounds=1)
    benchmark.extra_info["images"] = images
    assert code == 0
