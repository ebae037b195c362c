"""NormStats: the EMA by hand, its modes, its state, and agreement across ranks."""
from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

from pyfacex.nn import NormStats
from ranks import spawn_ranks


def test_first_update_copies_then_ema_by_hand():
    stats = NormStats(momentum=0.25, eps=0.0)
    stats(torch.tensor([1.0, 3.0]))  # mean 2, unbiased std √2
    torch.testing.assert_close(stats.mean, torch.tensor(2.0))
    torch.testing.assert_close(stats.std, torch.tensor(2.0).sqrt())
    z = stats(torch.tensor([6.0, 6.0, 6.0]))  # batch mean 6, std 0
    torch.testing.assert_close(stats.mean, torch.tensor(0.75 * 2 + 0.25 * 6))
    torch.testing.assert_close(stats.std, torch.tensor(0.75 * 2**0.5))
    torch.testing.assert_close(z, torch.full((3,), (6 - 3.0) / (0.75 * 2**0.5)))
    assert int(stats.num_updates) == 2


def test_features_are_reduced_to_their_norms():
    stats = NormStats(eps=0.0)
    z = stats(torch.tensor([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0]]))  # norms 5, 1, 10
    norms = torch.tensor([5.0, 1.0, 10.0])
    torch.testing.assert_close(z, (norms - norms.mean()) / norms.std())


def test_eval_mode_reads_without_updating():
    stats = NormStats()
    stats(torch.tensor([1.0, 2.0, 3.0]))
    before = {k: v.clone() for k, v in stats.state_dict().items()}
    stats.eval()
    stats(torch.tensor([100.0, 200.0]))
    for key, value in stats.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_state_dict_round_trip():
    stats = NormStats()
    stats(torch.tensor([1.0, 5.0, 9.0]))
    restored = NormStats()
    restored.load_state_dict(stats.state_dict())
    assert set(stats.state_dict()) == {"mean", "std", "num_updates"}
    x = torch.tensor([2.0, 4.0])
    torch.testing.assert_close(restored.eval()(x), stats.eval()(x))


def test_bad_input():
    stats = NormStats()
    with pytest.raises(ValueError, match="must be finite"):
        stats(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match=r"features \(B, d\) or norms \(B,\)"):
        stats(torch.zeros(2, 3, 4))
    with pytest.raises(TypeError, match="floating-point"):
        stats(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="momentum"):
        NormStats(momentum=0.0)
    assert stats(torch.zeros(0)).shape == (0,) and int(stats.num_updates) == 0


def _rank_work(rank: int, batches: list[torch.Tensor], splits: list[int], out: dict) -> None:
    stats = NormStats(momentum=0.1)
    for batch, split in zip(batches, splits):
        stats(batch[:split] if rank == 0 else batch[split:])
    out[rank] = torch.stack([stats.mean, stats.std]).tolist()


def test_two_ranks_equal_one_process_on_the_global_batch():
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(8, 16, generator=gen) * (1 + i) for i in range(4)]
    # Rank 0 takes the first `split` rows: halves, uneven, and all of it (rank 1 gets an empty batch
    # and must still take part in the all-reduce).
    splits = [4, 4, 3, 8]
    single = NormStats(momentum=0.1)
    for batch in batches:
        single(batch)
    with mp.Manager() as manager:
        out = manager.dict()
        spawn_ranks(_rank_work, batches, splits, out, init_group=True)
        results = dict(out)
    expected = [single.mean.item(), single.std.item()]
    for rank in (0, 1):
        assert results[rank] == pytest.approx(expected, rel=1e-6), rank
