"""Exact top-k cosine search of queries in a gallery, in chunks of both, so memory stays bounded.

Each step scores a block of queries against a chunk of the gallery (one matrix product), keeps the
chunk's k best per query and merges them with the best so far. Nothing is approximated: the result
is the top k of the full score matrix, with ties broken towards the lower gallery index whatever
the chunk size (a stable order: higher score first, then lower index), so chunking never changes
which items are returned. Scores are the cosines of the rows as given (each normalised here).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data._args import check_int

__all__ = ["top_k", "DEFAULT_CHUNK"]

DEFAULT_CHUNK = 4096
"""Queries per block and gallery rows per chunk: the score block is at most 4096² floats (64 MB)."""


def as_rows(value, name: str) -> torch.Tensor:
    """(N, d) floating rows of a tensor or array; one (d,) row becomes (1, d); errors name ``name``."""
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"{name}: expected a tensor or array (N, d) of embeddings, got {type(value).__name__}") \
                from error
    if not value.is_floating_point():
        raise TypeError(f"{name}: expected floating embeddings (N, d), got dtype {value.dtype}")
    if value.dim() == 1:
        value = value.unsqueeze(0)
    if value.dim() != 2:
        raise ValueError(f"{name}: expected embeddings (N, d), got shape {tuple(value.shape)}")
    return value


def normalised_rows(rows: torch.Tensor, name: str, start: int, device, dtype) -> torch.Tensor:
    """``rows`` (N, d) on ``device`` in ``dtype``, checked finite (the error names ``name`` and the row,
    counted from ``start``) and L2-normalised (a zero row stays zero)."""
    block = rows.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(block).all()):
        bad = start + int((~torch.isfinite(block)).any(1).nonzero()[0])
        raise ValueError(f"{name}: expected finite embeddings, row {bad} has NaN or inf")
    return F.normalize(block, dim=1)


def _ordered(scores: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates per row in (score descending, index ascending) order."""
    by_index = index.argsort(dim=1)
    scores, index = scores.gather(1, by_index), index.gather(1, by_index)
    by_score = scores.argsort(dim=1, descending=True, stable=True)
    return scores.gather(1, by_score), index.gather(1, by_score)


def _chunk_best(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best columns of each row of a score block, (score desc, column asc), ties at the cut
    resolved towards the lower column (topk alone leaves that unspecified)."""
    k = min(k, scores.shape[1])
    values, columns = scores.topk(k, dim=1)
    if k < scores.shape[1]:
        # A row where more entries reach the k-th value than were taken has a tie at the cut: for
        # those rows only, a stable full sort picks the lowest columns among the tied.
        tied = (scores >= values[:, -1:]).sum(1) > k
        if bool(tied.any()):
            rows = tied.nonzero().flatten()
            order = scores[rows].argsort(dim=1, descending=True, stable=True)[:, :k]
            values[rows], columns[rows] = scores[rows].gather(1, order), order
    return _ordered(values, columns)


def top_k(queries, gallery, k: int, *, chunk_size: int = DEFAULT_CHUNK,
          device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k gallery rows most similar (cosine) to each query, exactly.

    Args:
        queries: (Q, d) or (d,) embeddings (tensor or array; not necessarily normalised).
        gallery: (M, d) embeddings.
        k: how many per query, >= 1; a gallery of fewer than k rows gives all of them.
        chunk_size: queries per block and gallery rows per chunk (memory: chunk_size² scores).
        device: where the products run (default: the queries' device).
    Returns:
        (scores, indices): (Q, min(k, M)) cosines in descending order (float32; float64 when both
        inputs are float64) and int64 gallery row indices, on the queries' device; among equal scores
        the lower index comes first.
    Raises:
        TypeError / ValueError naming ``queries``, ``gallery`` (not floating, bad shape, other d, NaN
        or inf), ``k`` or ``chunk_size``.
    """
    query_rows, gallery_rows = as_rows(queries, "queries"), as_rows(gallery, "gallery")
    if query_rows.shape[1] != gallery_rows.shape[1]:
        raise ValueError(f"gallery: expected embeddings of the queries' size {query_rows.shape[1]}, got "
                         f"{gallery_rows.shape[1]}")
    k = check_int("k", k, 1)
    chunk = check_int("chunk_size", chunk_size, 1)
    home = query_rows.device
    device = torch.device(device) if device is not None else home
    dtype = torch.float64 if query_rows.dtype == gallery_rows.dtype == torch.float64 else torch.float32
    width = min(k, gallery_rows.shape[0])
    all_scores, all_index = [], []
    for q_start in range(0, query_rows.shape[0], chunk):
        block = normalised_rows(query_rows[q_start:q_start + chunk], "queries", q_start, device, dtype)
        best = torch.empty(block.shape[0], 0, dtype=dtype, device=device)
        best_index = torch.empty(block.shape[0], 0, dtype=torch.int64, device=device)
        for g_start in range(0, gallery_rows.shape[0], chunk):
            items = normalised_rows(gallery_rows[g_start:g_start + chunk], "gallery", g_start, device, dtype)
            values, columns = _chunk_best(block @ items.T, width)
            # The best so far hold lower indices than this chunk and both are in (score, index) order,
            # so a stable sort of their concatenation by score keeps that order.
            merged, merged_index = torch.cat([best, values], 1), torch.cat([best_index, columns + g_start], 1)
            order = merged.argsort(dim=1, descending=True, stable=True)[:, :width]
            best, best_index = merged.gather(1, order), merged_index.gather(1, order)
        all_scores.append(best.to(home))
        all_index.append(best_index.to(home))
    if not all_scores:
        return torch.empty(0, width, dtype=dtype, device=home), torch.empty(0, width, dtype=torch.int64, device=home)
    return torch.cat(all_scores), torch.cat(all_index)
