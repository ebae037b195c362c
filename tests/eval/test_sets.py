import pytest
import torch

from pyfacex.data import RaggedSetDataset
from pyfacex.eval.sets import aggregate_then_embed, apply_set_fn, check_sets, embed_sets, mean_pooling
from pyfacex.ops import set_max


def _ragged(sizes, dim=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    members = torch.randn(sum(sizes), dim, generator=generator, dtype=torch.float64)
    offsets = torch.tensor([0, *torch.tensor(sizes).cumsum(0).tolist()], dtype=torch.int64)
    return members, offsets


def _linear(dim_in=5, dim_out=3, seed=1):
    weight = torch.randn(dim_in, dim_out, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return lambda x: torch.tanh(x.reshape(len(x), -1).to(torch.float64) @ weight)


def test_mean_pooling_equals_a_loop_over_sets():
    members, offsets = _ragged([3, 1, 4, 2])
    embed = _linear()
    got = mean_pooling(embed)(members, offsets)
    bounds = offsets.tolist()
    expected = torch.stack([embed(members[a:b]).mean(0) for a, b in zip(bounds[:-1], bounds[1:])])
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("max_images", [1, 4, 100])
def test_embed_sets_returns_set_order_with_bounded_batches(max_images):
    sizes = [3, 1, 4, 2, 5]
    members, offsets = _ragged(sizes)
    sets = list(members.split(sizes))
    batches = []
    inner = mean_pooling(_linear())

    def set_fn(x, o):
        batches.append(x.shape[0] if len(o) > 2 else 0)  # multi-set batches must respect the bound
        return inner(x, o)

    got = embed_sets(set_fn, sets, max_images=max_images)
    torch.testing.assert_close(got, inner(members, offsets))
    assert max(batches) <= max_images


def test_embed_sets_loads_members_lazily_from_a_dataset():
    table = torch.arange(12, dtype=torch.float64).reshape(6, 2)
    dataset = RaggedSetDataset([[0, 1], [5], [2, 3, 4]], table.__getitem__)
    got = embed_sets(mean_pooling(lambda x: x), dataset, max_images=3)
    torch.testing.assert_close(got, torch.stack([table[[0, 1]].mean(0), table[5], table[[2, 3, 4]].mean(0)]))


@pytest.mark.parametrize("make", ["mean", "max"])
def test_permutation_invariant_set_fn_gives_permutation_invariant_embeddings(make):
    sizes = [4, 2, 5]
    members, _ = _ragged(sizes, seed=3)
    sets = list(members.split(sizes))
    set_fn = mean_pooling(_linear()) if make == "mean" else aggregate_then_embed(set_max, _linear())
    generator = torch.Generator().manual_seed(7)
    shuffled = [s[torch.randperm(len(s), generator=generator)] for s in sets]
    assert any(not torch.equal(a, b) for a, b in zip(sets, shuffled))
    reference = embed_sets(set_fn, sets)
    torch.testing.assert_close(embed_sets(set_fn, shuffled), reference)
    # reordering the sets reorders the rows
    torch.testing.assert_close(embed_sets(set_fn, sets[::-1]), reference.flip(0))
    # a set function that is not invariant (first member only) does see the shuffle
    first = lambda x, o: _linear()(x[o[:-1]])  # noqa: E731
    assert not torch.allclose(embed_sets(first, shuffled), embed_sets(first, sets))


def test_aggregate_then_embed_embeds_one_aggregated_item_per_set():
    images = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    offsets = torch.tensor([0, 2, 5])
    embed = _linear(48, 6)
    got = aggregate_then_embed(set_max, embed)(images, offsets)
    expected = embed(torch.stack([images[:2].amax(0), images[2:].amax(0)]))
    torch.testing.assert_close(got, expected)


def test_empty_set_is_named():
    with pytest.raises(ValueError, match=r"sets\[1\] is empty"):
        embed_sets(mean_pooling(lambda x: x), [torch.ones(2, 3), torch.ones(0, 3)])
    members, _ = _ragged([2, 2])
    with pytest.raises(ValueError, match="set 11 is empty"):
        check_sets(members, torch.tensor([0, 2, 2, 4]), set_ids=[10, 11, 12])


def test_offsets_that_disagree_with_members_are_rejected():
    members, _ = _ragged([2, 3])
    with pytest.raises(ValueError, match=r"offsets\[-1\] must equal x.shape\[0\] = 5"):
        mean_pooling(lambda x: x)(members, torch.tensor([0, 2, 4]))
    with pytest.raises(ValueError, match="non-decreasing"):
        apply_set_fn(lambda x, o: x[:2], members, torch.tensor([0, 3, 2, 5]))
    with pytest.raises(TypeError, match="int64"):
        apply_set_fn(lambda x, o: x[:2], members, torch.tensor([0, 2, 5], dtype=torch.int32))


def test_wrong_set_fn_output_names_what_it_returned():
    sets = [torch.ones(2, 3), torch.ones(1, 3)]
    with pytest.raises(ValueError, match=r"set_fn returned shape \(3, 3\) for sets \[0, 1\], expected \(2, d\)"):
        embed_sets(lambda x, o: x, sets)
    with pytest.raises(ValueError, match=r"returned shape \(2,\)"):
        embed_sets(lambda x, o: x[:2, 0], sets)
    with pytest.raises(TypeError, match="returned list"):
        embed_sets(lambda x, o: [1, 2], sets)
    with pytest.raises(ValueError, match=r"embed_fn returned shape \(2, 3\)"):
        mean_pooling(lambda x: x[:2])(torch.ones(3, 3), torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match=r"non-finite embeddings for sets \[1\]"):
        embed_sets(lambda x, o: torch.tensor([[0.0], [float("nan")]]), sets)


def test_no_sets_give_an_empty_result():
    assert embed_sets(mean_pooling(lambda x: x), []).shape == (0, 0)
