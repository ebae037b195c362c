"""top_k: exact top-k cosine search in chunks equals the unchunked search and the brute-force sort."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pyfacex.embed import FaceEmbedder, top_k


def _brute_force(queries, gallery, k):
    scores = F.normalize(queries, dim=1) @ F.normalize(gallery, dim=1).T
    # the documented order: higher score first, then the lower index (a stable sort of the columns)
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :k]
    return scores.gather(1, order), order


@pytest.mark.parametrize("chunk", [1, 7, 64, 5000])
def test_chunked_equals_unchunked_and_brute_force(chunk):
    generator = torch.Generator().manual_seed(0)
    queries, gallery = torch.randn(29, 12, generator=generator), torch.randn(301, 12, generator=generator) * 3
    expected_scores, expected_index = _brute_force(queries, gallery, 10)
    scores, index = top_k(queries, gallery, 10, chunk_size=chunk)
    assert scores.shape == (29, 10) and index.dtype == torch.int64
    assert torch.equal(index, expected_index)     # random scores: no ties, the same items in the same order
    torch.testing.assert_close(scores, expected_scores, rtol=0, atol=1e-6)
    whole_scores, whole_index = top_k(queries, gallery, 10, chunk_size=10_000)
    assert torch.equal(index, whole_index)
    torch.testing.assert_close(scores, whole_scores, rtol=0, atol=1e-6)
    assert bool((scores[:, 1:] <= scores[:, :-1]).all())


def test_ties_go_to_the_lower_index_whatever_the_chunks():
    # small-integer vectors: every score is exact, so ties are exact; many duplicates straddle chunks
    gallery = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0],
                            [1, 1, 0], [1, 0, 0]])
    queries = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0]])
    expected = [[0, 2, 4], [1, 5, 3], [3, 7, 0]]
    for chunk in (1, 2, 3, 4, 9, 100):
        scores, index = top_k(queries, gallery, 3, chunk_size=chunk)
        assert index.tolist() == expected, chunk
    assert scores[0].tolist() == [1.0, 1.0, 1.0]


def test_k_larger_than_the_gallery_empty_inputs_and_one_query():
    gallery = torch.randn(4, 6)
    scores, index = top_k(torch.randn(3, 6), gallery, 10)
    assert scores.shape == index.shape == (3, 4)
    assert sorted(index[0].tolist()) == [0, 1, 2, 3]
    scores, index = top_k(torch.randn(3, 6), torch.zeros(0, 6), 5)
    assert scores.shape == index.shape == (3, 0)
    scores, index = top_k(torch.zeros(0, 6), gallery, 2)
    assert scores.shape == index.shape == (0, 2)
    scores, index = top_k(gallery[2], gallery, 1)            # one (d,) query: a (1, k) answer
    assert index.tolist() == [[2]] and abs(scores.item() - 1.0) < 1e-6


def test_arrays_float64_and_the_faceembedder_method():
    generator = torch.Generator().manual_seed(1)
    queries, gallery = torch.randn(5, 4, generator=generator, dtype=torch.float64), \
        torch.randn(50, 4, generator=generator, dtype=torch.float64)
    scores, index = top_k(queries.numpy(), gallery.numpy(), 3, chunk_size=8)
    assert scores.dtype == torch.float64
    expected_scores, expected_index = _brute_force(queries, gallery, 3)
    assert torch.equal(index, expected_index)
    torch.testing.assert_close(scores, expected_scores, rtol=0, atol=1e-12)
    via_method = FaceEmbedder.search(queries.float(), gallery.float(), k=3, chunk_size=8)
    assert torch.equal(via_method[1], index)


def test_errors_name_the_argument():
    good = torch.randn(3, 4)
    with pytest.raises(ValueError, match="gallery: expected embeddings of the queries' size 4, got 5"):
        top_k(good, torch.randn(3, 5), 1)
    with pytest.raises(TypeError, match="queries: expected floating"):
        top_k(torch.ones(3, 4, dtype=torch.int64), good, 1)
    with pytest.raises(ValueError, match="gallery: expected finite embeddings, row 7"):
        bad = torch.randn(9, 4)
        bad[7, 1] = float("nan")
        top_k(good, bad, 2, chunk_size=3)
    with pytest.raises(ValueError, match="k: expected an int >= 1"):
        top_k(good, good, 0)
    with pytest.raises(ValueError, match="chunk_size"):
        top_k(good, good, 1, chunk_size=0)
    with pytest.raises(ValueError, match="queries: expected embeddings"):
        top_k(torch.randn(2, 3, 4), good, 1)
    with pytest.raises(TypeError, match="gallery"):
        top_k(good, np.array(["a", "b"]), 1)
