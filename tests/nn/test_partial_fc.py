"""PartialFC under torchrun with 2 CPU processes (gloo) equals the single-process head on the global batch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pyfacex.nn as pnn
from ranks import free_port

from .test_margin_heads import insightface_filtered_loss

WORKER = Path(__file__).with_name("partial_fc_worker.py")


def _torchrun(case: dict, tmp_path: Path) -> list[dict]:
    torch.save(case, tmp_path / "case.pt")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(WORKER), str(tmp_path / "case.pt"), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]


def _case(classes: int, settings: dict, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (8,), generator=gen)
    labels[5] = -1  # ignored row
    return {"embeddings": torch.randn(8, 16, generator=gen, dtype=torch.float64),
            "labels": labels,
            "weight": 0.1 * torch.randn(classes, 16, generator=gen, dtype=torch.float64),
            "settings": settings}


@pytest.mark.parametrize("settings", [
    {"s": 16.0, "m2": 0.5},
    {"s": 16.0, "m3": 0.35, "m2": 0.0, "label_smoothing": 0.1},
], ids=["arcface", "cosface-smoothing"])
def test_two_ranks_equal_the_full_head_on_the_global_batch(tmp_path, settings):
    case = _case(13, settings)  # 13 classes: shards of 7 and 6
    results = _torchrun(case, tmp_path)

    head = pnn.CombinedMarginHead(16, 13, **{"m2": 0.0, **settings}).double()
    head.weight.data.copy_(case["weight"])
    embeddings = case["embeddings"].clone().requires_grad_()
    details = head(embeddings, case["labels"], return_details=True)
    details.loss.backward()

    assert [r["class_start"] for r in results] == [0, 7]
    for rank, r in enumerate(results):
        rows = slice(4 * rank, 4 * rank + 4)
        torch.testing.assert_close(r["loss"], details.loss.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(r["per_sample"], details.per_sample[rows].detach())
        torch.testing.assert_close(r["target_cos"], details.target_cos[rows])
        torch.testing.assert_close(r["grad_embeddings"], embeddings.grad[rows])
        start, count = pnn.partial_fc.class_shard(13, rank, 2)
        torch.testing.assert_close(r["grad_weight"], head.weight.grad[start:start + count])
        assert r["state"]["weight"].shape == (count, 16)


def test_two_ranks_filter_as_insightface_on_the_global_batch(tmp_path):
    case = _case(13, {"s": 16.0, "m2": 0.5, "interclass_filtering_threshold": 0.2}, seed=1)
    results = _torchrun(case, tmp_path)
    embeddings, weight = case["embeddings"].clone().requires_grad_(), case["weight"].clone().requires_grad_()
    loss = insightface_filtered_loss(embeddings, weight, case["labels"], 16.0, 0.5, 0.2)
    loss.backward()
    for rank, r in enumerate(results):
        torch.testing.assert_close(r["loss"], loss.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(r["grad_embeddings"], embeddings.grad[4 * rank:4 * rank + 4])
        shard = slice(r["class_start"], r["class_start"] + len(r["grad_weight"]))
        torch.testing.assert_close(r["grad_weight"], weight.grad[shard])


def test_two_ranks_sampling_keeps_positives_and_equals_the_head_over_the_kept_classes(tmp_path):
    case = _case(40, {"s": 16.0, "m2": 0.5, "sample_rate": 0.25})
    results = _torchrun(case, tmp_path)
    # Each rank's weight gradient is non-zero exactly on the classes it kept; reassemble them.
    kept = torch.cat([r["class_start"] + torch.nonzero(r["grad_weight"].abs().sum(1) > 0).squeeze(1) for r in results])
    positives = set(case["labels"][case["labels"] >= 0].tolist())
    assert positives <= set(kept.tolist())
    assert kept.numel() == 2 * int(0.25 * 20)
    labels = case["labels"]
    remapped = torch.where(labels >= 0, torch.searchsorted(kept, labels.clamp(min=0)), -1)
    head = pnn.ArcFace(16, kept.numel(), s=16.0).double()
    head.weight.data.copy_(case["weight"][kept])
    loss = head(case["embeddings"], remapped)
    for r in results:
        torch.testing.assert_close(r["loss"], loss.detach(), rtol=1e-12, atol=1e-12)
