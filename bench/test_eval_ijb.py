"""IJB 1:1 scoring: cosine similarity of template pairs, pyfacex's chunked scorer against the obvious ones.

20,000 templates of d = 512 (float32, L2-normalised, ids 1..20000) and random pairs:

- ``pyfacex-chunked``: :func:`pyfacex.eval.ijb.score_pairs`: per chunk of 8192 pairs, map the ids
  to rows (``searchsorted``), gather both sides into two reused (8192, 512) buffers, row-wise
  ``vecdot``; memory is the (M,) scores plus 32 MiB.
- ``eager``: insightface's ``ijb_11.py`` ``verification()``: a ``template2id`` lookup array, then a
  loop over batches of 100,000 pairs of ``np.sum(feat1 * feat2, -1)`` (numpy; insightface's template
  features are float64, here float32 like the others so that the bytes moved are the same).
- ``torch-gather-all``: the one-liner ``(feats[rows1] * feats[rows2]).sum(-1)``: it materialises
  both (M, d) sides and their product, 3·M·d·4 bytes: 61 GB at 10M pairs, so it runs at 1M pairs
  only (6.1 GB).

Groups: ``ijb_scores|10M-d512`` (one timed round each: a call takes seconds) and ``ijb_scores|1M-d512``
with all three. Under ``--benchmark-disable`` (CI: each runs once, untimed) the sizes shrink to 1M
and 100k pairs. Peak memory is the larger of torch's allocations (the profiler, as ``common.run``
records) and Python's (``tracemalloc``, which sees numpy's). ``extra_info["pairs_per_s"]`` holds the
throughput of the median round.
"""
from __future__ import annotations

import functools
import tracemalloc

import numpy as np
import pytest
import torch

from common import run
from pyfacex.eval.ijb import score_pairs

TEMPLATES, D = 20_000, 512
SIZES = {"10M": (10_000_000, 1_000_000), "1M": (1_000_000, 100_000)}  # (timed, under --benchmark-disable)
INSIGHTFACE_BATCH = 100_000


@functools.cache
def problem(pairs: int):
    """Template ids, features and (pairs, 2) template ids, as torch and numpy views of the same memory."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.arange(1, TEMPLATES + 1)
    feats = torch.nn.functional.normalize(torch.randn(TEMPLATES, D, generator=gen), dim=1)
    table = ids[torch.randint(0, TEMPLATES, (pairs, 2), generator=gen)]
    return ids, feats, table


def insightface_verification(ids: np.ndarray, feats: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """ijb_11.py's verification(), its loop as written (without the progress prints)."""
    template2id = np.zeros((max(ids) + 1, 1), dtype=int)
    for count, template in enumerate(ids):
        template2id[template] = count
    score = np.zeros((len(p1),))
    total = np.array(range(len(p1)))
    for s in [total[i:i + INSIGHTFACE_BATCH] for i in range(0, len(p1), INSIGHTFACE_BATCH)]:
        feat1 = feats[template2id[p1[s]]]
        feat2 = feats[template2id[p2[s]]]
        score[s] = np.sum(feat1 * feat2, -1).flatten()
    return score


def torch_gather_all(ids: torch.Tensor, feats: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    row = torch.zeros(int(ids.max()) + 1, dtype=torch.int64)
    row[ids] = torch.arange(len(ids))
    return (feats[row[table[:, 0]]] * feats[row[table[:, 1]]]).sum(-1)


def _call(impl: str, pairs: int):
    ids, feats, table = problem(pairs)
    if impl == "pyfacex-chunked":
        return lambda: score_pairs(ids, feats, table)
    if impl == "eager":
        args = ids.numpy(), feats.numpy(), table[:, 0].numpy(), table[:, 1].numpy()
        return lambda: insightface_verification(*args)
    return lambda: torch_gather_all(ids, feats, table)


def test_implementations_agree():
    """The three compute the same scores (small problem)."""
    expected = score_pairs(*problem(5000))
    for impl in ("eager", "torch-gather-all"):
        np.testing.assert_allclose(np.asarray(_call(impl, 5000)()), expected.numpy(), rtol=0, atol=1e-6)


def _python_peak(call) -> int:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("impl", ["pyfacex-chunked", "eager", "torch-gather-all"])
@pytest.mark.parametrize("size", list(SIZES))
def test_ijb_scores(benchmark, size, impl):
    if impl == "torch-gather-all" and size == "10M":
        pytest.skip("the gather-all one-liner needs 3·M·d·4 = 61 GB at 10M pairs: run at 1M only")
    pairs = SIZES[size][1] if benchmark.disabled else SIZES[size][0]
    call = _call(impl, pairs)
    scores = run(benchmark, call, group=f"ijb_scores|{size}-d{D}", impl=impl, rounds=1 if size == "10M" else 3)
    assert len(scores) == pairs
    if not benchmark.disabled:
        benchmark.extra_info["peak_bytes"] = max(benchmark.extra_info["peak_bytes"], _python_peak(call))
        benchmark.extra_info["pairs_per_s"] = round(pairs / benchmark.stats.stats.median)
