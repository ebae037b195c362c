"""Rank-N identification: CMC, rank-k rates, mAP and open-set TPIR@FPIR.

Every probe is searched in a gallery; scores are cosine similarities (higher = more alike). A probe
is *mated* when its label occurs in the gallery (the gallery may hold several items of one identity)
and *non-mated* otherwise.

Definitions (ties are counted against the probe everywhere, so no result depends on a sort order):

- first-mate rank of a mated probe: 1 + the number of non-mated gallery items scoring >= its best
  mate's score; ``cmc[k-1]`` = fraction of mated probes with rank <= k; ``rank[k]`` = ``cmc[k-1]``.
- average precision of a mated probe over the gallery ranked by score: the mean over its M mates j of
  (#mates scoring >= s_j) / (#items scoring >= s_j); without ties this is the re-identification
  (and TinyFace) AP over the ranked list, with ties it is sklearn's ``average_precision_score``.
  mAP = mean over mated probes.
- open set (NIST FRVT / IJB 1:N): with N non-mated probes whose top gallery scores, sorted
  descending, are x_1 >= x_2 >= ... >= x_N, a target FPIR admits k = floor(fpir·N) false alarms
  (with 1e-9 slack, so 0.29·100 admits 29). The threshold is the lowest one whose FPIR does not
  exceed the target: t = the next float64 above x_{k+1} (t = -inf when k = N), so exactly the
  non-mated probes scoring strictly above x_{k+1} pass; with ties at x_{k+1} fewer than k pass.
  TPIR(t) = fraction of mated probes whose first mate is at rank 1 and scores >= t. Without
  non-mated probes TPIR and the thresholds are undefined: they are NaN. Rank rates, CMC and mAP count
  mated probes only (NaN when there are none).
  Peers differ: the PFE / AdaFace ``DIR_FAR`` takes k = round(fpir·N) and t = x_k (the same k false
  alarms without ties, more with ties at x_k); insightface's ``IJB_1N.py`` is not this protocol at
  all: every probe must be mated, its threshold is the ceil(P·fpir)-th largest of all non-mate
  *pair* scores, and it counts mate scores > t without the rank-1 condition.

Scoring runs over blocks of ``chunk`` probes: memory is about chunk · G · 8 bytes (float32 scores and
an int32 bucket per score), never the full P × G matrix. Beyond the matrix product, each block costs
one binary search per score among the probe's mate scores (log M for M gallery items of its identity).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from ..data._args import check_int, label_vector

__all__ = ["IdentificationResult", "identification", "identification_from_scores"]

_SLACK = 1e-9


@dataclass
class IdentificationResult:
    """What :func:`identification` measures.

    Attributes:
        cmc: (max(ranks),) float64, cmc[k-1] = fraction of mated probes whose first mate is at rank <= k.
        rank: {k: rank-k identification rate} for each requested rank.
        tpir: {fpir: TPIR at that FPIR} (NaN without non-mated probes).
        thresholds: {fpir: score threshold t} (accept score >= t; NaN without non-mated probes).
        mean_average_precision: mean AP over mated probes.
        num_mated, num_non_mated: probe counts.
        first_mate_rank: (P,) int64 rank of each probe's first mate, 0 for non-mated probes.
    """

    cmc: torch.Tensor
    rank: dict[int, float]
    tpir: dict[float, float]
    thresholds: dict[float, float]
    mean_average_precision: float
    num_mated: int
    num_non_mated: int
    first_mate_rank: torch.Tensor

    def as_dict(self) -> dict:
        """JSON-ready summary: NaN (undefined) and the -inf threshold of FPIR 1 become None; rank and
        FPIR keys become strings ("1", "0.01")."""
        def number(value: float):
            return value if math.isfinite(value) else None
        return {"num_mated": self.num_mated, "num_non_mated": self.num_non_mated,
                "rank": {str(k): number(v) for k, v in self.rank.items()},
                "mAP": number(self.mean_average_precision),
                "tpir": {repr(f): number(v) for f, v in self.tpir.items()},
                "thresholds": {repr(f): number(v) for f, v in self.thresholds.items()},
                "cmc": [number(v) for v in self.cmc.tolist()]}

    def table(self) -> str:
        """A two-line text table: rank-k rates, mAP and TPIR@FPIR in percent, with the probe counts."""
        head = [f"rank-{k}" for k in self.rank] + ["mAP"] + [f"TPIR@FPIR={f:g}" for f in self.tpir]
        values = list(self.rank.values()) + [self.mean_average_precision] + list(self.tpir.values())
        cells = ["n/a" if math.isnan(v) else f"{100 * v:.2f}" for v in values]
        widths = [max(len(h), len(c)) for h, c in zip(head, cells)]
        return (f"identification: {self.num_mated} mated, {self.num_non_mated} non-mated probes (%)\n"
                + "  ".join(h.rjust(w) for h, w in zip(head, widths)) + "\n"
                + "  ".join(c.rjust(w) for c, w in zip(cells, widths)))


# ----------------------------------------------------------------------------------------------------
# arguments


def _features(x, name: str) -> torch.Tensor:
    """(N, d) floating features, L2-normalised in float32; NaN/inf/zero rows are errors naming the row."""
    x = torch.as_tensor(x).detach()
    if x.dim() != 2:
        raise ValueError(f"{name}: expected features (N, d), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected floating-point features, got {x.dtype}")
    x = x.to("cpu", torch.float32)
    finite = torch.isfinite(x).all(1)
    if not bool(finite.all()):
        raise ValueError(f"{name}: feature {int((~finite).nonzero()[0])} holds NaN or inf")
    norms = x.norm(dim=1)
    if bool((norms == 0).any()):
        raise ValueError(f"{name}: feature {int((norms == 0).nonzero()[0])} is all zeros (no direction)")
    return x / norms.unsqueeze(1)


def _labels(labels, count: int, name: str, what: str) -> torch.Tensor:
    vector = torch.from_numpy(label_vector(labels, name))
    if len(vector) != count:
        raise ValueError(f"{name}: expected one label per {what} ({count}), got {len(vector)}")
    return vector


def _ranks(ranks) -> tuple[int, ...]:
    values = [check_int("ranks", k, 1) for k in ranks]
    if not values:
        raise ValueError("ranks: expected at least one rank")
    return tuple(sorted(set(values)))


def _fpirs(fpirs) -> tuple[float, ...]:
    values = []
    for f in fpirs:
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f <= 1:
            raise ValueError(f"fpirs: expected numbers in [0, 1], got {f!r}")
        values.append(float(f))
    return tuple(values)


# ----------------------------------------------------------------------------------------------------
# scoring


class _Gallery:
    """Labels of a non-empty gallery grouped by identity: the gallery indices of label ``unique[s]``
    are ``order[start[s] : start[s] + count[s]]``."""

    def __init__(self, labels: torch.Tensor):
        self.size = len(labels)
        self.unique, self.count = torch.unique(labels, return_counts=True)
        self.order = torch.argsort(labels, stable=True)
        self.start = torch.cumsum(self.count, 0) - self.count

    def mates(self, probe_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(c, M) gallery indices of each of c >= 1 probes' mates (padded with 0) and their validity."""
        slot = torch.searchsorted(self.unique, probe_labels).clamp(max=len(self.unique) - 1)
        count = torch.where(self.unique[slot] == probe_labels, self.count[slot], 0)
        column = torch.arange(int(count.max()))
        valid = column < count.unsqueeze(1)
        position = (self.start[slot].unsqueeze(1) + column).clamp(max=self.size - 1)
        return torch.where(valid, self.order[position], 0), valid


@dataclass
class _PerProbe:
    """Per-probe outcomes of one block: rank (0 = non-mated), AP (NaN for non-mated), top score."""

    rank: torch.Tensor
    average_precision: torch.Tensor
    top: torch.Tensor


def _score_block(scores: torch.Tensor, probe_labels: torch.Tensor, gallery: _Gallery) -> _PerProbe:
    """Rank, AP and top score of each probe of a (c, G) block of scores."""
    c = len(scores)
    index, valid = gallery.mates(probe_labels)
    mates = valid.sum(1)
    rank = torch.zeros(c, dtype=torch.int64)
    ap = torch.full((c,), math.nan, dtype=torch.float64)
    if valid.shape[1]:
        width = valid.shape[1]
        # Mate scores are read out of the block itself, so each mate compares equal to its own entry;
        # ascending, with +inf pads after the valid ones.
        mate = torch.where(valid, scores.gather(1, index), math.inf).sort(1).values
        # bucket[i, g] = #mates of probe i scoring <= scores[i, g]; item g is >= mate j iff bucket > j,
        # so one histogram of buckets per probe gives #items >= every mate in one pass over the block.
        bucket = torch.searchsorted(mate, scores, right=True, out_int32=True)
        bucket += torch.arange(c, dtype=torch.int32).unsqueeze(1) * (width + 1)
        histogram = torch.bincount(bucket.view(-1), minlength=c * (width + 1)).view(c, width + 1)
        del bucket  # c·G ints: free them before the next block's scores exist
        items_above = histogram.flip(1).cumsum(1).flip(1)[:, 1:]             # (c, width): #items >= mate j
        mates_above = mates.unsqueeze(1) - torch.searchsorted(mate, mate)    # #mates >= mate j
        precision = torch.where(valid, mates_above.double() / items_above.clamp(min=1), 0.0)
        mated = mates > 0
        ap = torch.where(mated, precision.sum(1) / mates.clamp(min=1), math.nan)
        best = (mates - 1).clamp(min=0).unsqueeze(1)                         # the highest mate
        first = 1 + items_above.gather(1, best) - mates_above.gather(1, best)  # 1 + #non-mates >= best mate
        rank = torch.where(mated, first.squeeze(1), 0)
    return _PerProbe(rank, ap, scores.amax(1).to(torch.float64))


def _summarize(outcome: _PerProbe, ranks: tuple[int, ...], fpirs: tuple[float, ...]) -> IdentificationResult:
    mated = outcome.rank > 0
    num_mated, num_non_mated = int(mated.sum()), int((~mated).sum())
    first = outcome.rank[mated]
    if num_mated:
        hits = torch.bincount(first.clamp(max=ranks[-1] + 1) - 1, minlength=ranks[-1] + 1)[: ranks[-1]]
        cmc = hits.cumsum(0).to(torch.float64) / num_mated
        mean_ap = float(outcome.average_precision[mated].mean())
    else:
        cmc = torch.full((ranks[-1],), math.nan, dtype=torch.float64)
        mean_ap = math.nan
    impostor = outcome.top[~mated].sort(descending=True).values
    rank_one = outcome.top[mated][first == 1]    # a probe at rank 1 tops the gallery with its mate
    tpir, thresholds = {}, {}
    for fpir in fpirs:
        if num_non_mated == 0:
            tpir[fpir] = thresholds[fpir] = math.nan
            continue
        k = math.floor(fpir * num_non_mated + _SLACK)
        t = -math.inf if k >= num_non_mated else math.nextafter(float(impostor[k]), math.inf)
        thresholds[fpir] = t
        tpir[fpir] = float((rank_one >= t).sum()) / num_mated if num_mated else math.nan
    return IdentificationResult(cmc=cmc, rank={k: float(cmc[k - 1]) for k in ranks}, tpir=tpir,
                                thresholds=thresholds, mean_average_precision=mean_ap, num_mated=num_mated,
                                num_non_mated=num_non_mated, first_mate_rank=outcome.rank)


def _run(blocks, probe_labels: torch.Tensor, gallery_labels: torch.Tensor, chunk: int, ranks, fpirs,
         progress: bool) -> IdentificationResult:
    """Score ``blocks(start, stop)`` -> (stop-start, G) scores for each block of probes and summarise."""
    chunk = check_int("chunk", chunk, 1)
    ranks, fpirs = _ranks(ranks), _fpirs(fpirs)
    if len(gallery_labels) == 0:
        raise ValueError("gallery: expected at least one gallery item, got an empty gallery")
    gallery = _Gallery(gallery_labels)
    parts = []
    starts = range(0, len(probe_labels), chunk)
    for start in tqdm(starts, desc="identification", unit="block", disable=not progress):
        stop = min(start + chunk, len(probe_labels))
        parts.append(_score_block(blocks(start, stop), probe_labels[start:stop], gallery))
    if parts:
        outcome = _PerProbe(*(torch.cat(v) for v in zip(*((p.rank, p.average_precision, p.top) for p in parts))))
    else:
        outcome = _PerProbe(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.float64),
                            torch.zeros(0, dtype=torch.float64))
    return _summarize(outcome, ranks, fpirs)


# ----------------------------------------------------------------------------------------------------
# public


def identification(probe, probe_labels, gallery, gallery_labels, *, ranks: Sequence[int] = (1, 5, 10, 20),
                   fpirs: Sequence[float] = (1e-2, 1e-1), chunk: int = 4096,
                   progress: bool = False) -> IdentificationResult:
    """Search every probe in the gallery by cosine similarity: CMC, rank-k, mAP and TPIR@FPIR.

    Args:
        probe: (P, d) float features; probe_labels: (P,) ints. Probes whose label is not in the
            gallery are non-mated (they count for FPIR only).
        gallery: (G, d) float features; gallery_labels: (G,) ints (several items may share a label).
        ranks: ranks k >= 1 to report (the CMC runs to the largest).
        fpirs: target FPIRs in [0, 1].
        chunk: probes scored at once (memory about chunk · G · 8 bytes).
        progress: show a tqdm bar over the blocks.
    Features are L2-normalised here (float32); the definitions are in the module docstring.
    Returns:
        :class:`IdentificationResult`.
    Raises:
        ValueError naming the argument: a feature row with NaN/inf or all zeros (its index), label
        count != feature count, differing d, an empty gallery, bad ranks/fpirs/chunk.
    """
    probe, gallery = _features(probe, "probe"), _features(gallery, "gallery")
    if probe.shape[1] != gallery.shape[1] and len(probe) and len(gallery):
        raise ValueError(f"gallery: expected features of the probes' dimension {probe.shape[1]}, "
                         f"got {gallery.shape[1]}")
    probe_labels = _labels(probe_labels, len(probe), "probe_labels", "probe feature")
    gallery_labels = _labels(gallery_labels, len(gallery), "gallery_labels", "gallery feature")
    return _run(lambda start, stop: probe[start:stop] @ gallery.T, probe_labels, gallery_labels, chunk,
                ranks, fpirs, progress)


def identification_from_scores(scores, probe_labels, gallery_labels, *, ranks: Sequence[int] = (1, 5, 10, 20),
                               fpirs: Sequence[float] = (1e-2, 1e-1), chunk: int = 4096,
                               progress: bool = False) -> IdentificationResult:
    """:func:`identification` on precomputed similarities (higher = more alike).

    Args:
        scores: (P, G) float similarities of each probe to each gallery item (any scale).
        probe_labels: (P,) ints; gallery_labels: (G,) ints.
        ranks, fpirs, chunk, progress: as for :func:`identification` (chunk bounds the temporaries).
    Raises:
        ValueError: NaN/inf scores (naming probe and gallery index), label counts that do not match
        the score matrix, an empty gallery.
    """
    scores = torch.as_tensor(scores).detach()
    if scores.dim() != 2:
        raise ValueError(f"scores: expected a (P, G) matrix, got shape {tuple(scores.shape)}")
    if not scores.is_floating_point():
        raise TypeError(f"scores: expected floating-point similarities, got {scores.dtype}")
    scores = scores.cpu()
    if not bool(torch.isfinite(scores).all()):
        p, g = (~torch.isfinite(scores)).nonzero()[0].tolist()
        raise ValueError(f"scores: expected finite values, scores[{p}, {g}] is {scores[p, g].item()}")
    probe_labels = _labels(probe_labels, scores.shape[0], "probe_labels", "score row")
    gallery_labels = _labels(gallery_labels, scores.shape[1], "gallery_labels", "score column")
    return _run(lambda start, stop: scores[start:stop], probe_labels, gallery_labels, chunk, ranks, fpirs, progress)
