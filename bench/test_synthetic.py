"""The synthetic face renderer: images per second on one core, at 112×112 (recognition, "arcface"
framing) and 256×256 (landmarks, whole head), at three difficulties of the nuisance knobs.

Groups ``synthetic|112`` and ``synthetic|256``, implementations ``difficulty-0`` (frontal, neutral,
clean), ``difficulty-0.3`` (the default) and ``difficulty-1`` (up to unrecognisable: more occluders
and every degradation). One call renders a fresh batch of distinct identities and samples, JPEG
round trips and noise included, with torch limited to one thread. ``extra_info["images_per_s"]``
holds the throughput of the median round.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from common import run
from pyfacex.data.synthetic import Nuisance, SyntheticFaceWorld

BATCH = {112: 256, 256: 64}


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("difficulty", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("size", [112, 256])
def test_render(benchmark, one_thread, size, difficulty):
    world = SyntheticFaceWorld(seed=0, size=size, nuisance=Nuisance(difficulty=difficulty))
    batch = BATCH[size]
    identities = torch.arange(batch)
    calls = itertools.count()

    def render():
        # New samples every call: nothing is cached between rounds.
        return world.render(identities, torch.full((batch,), next(calls)))

    run(benchmark, render, group=f"synthetic|{size}", impl=f"difficulty-{difficulty:g}", rounds=5)
    if not benchmark.disabled:
        benchmark.extra_info["images_per_s"] = round(batch / benchmark.stats.stats.median)
