"""IJB 1:1 verification of template pairs and 1:N open-set identification over two galleries.

1:1: each pair's score is the cosine of its two template features. Pairs are scored in chunks of
``chunk`` pairs: the chunk's template rows are gathered into two preallocated (chunk, d) buffers and
dotted row by row, so memory is the (M,) scores, a normalised copy of the template features and
2·chunk·d floats whatever M is (IJB-C has 15.7M pairs; gathering both sides at once would take
2·M·d·4 = 64 GB at d = 512). On a 2-core Xeon: 2.1M pairs/s at d = 512, 4.3× insightface's numpy
loop, peak 126 MiB for 10M pairs (``bench/test_eval_ijb.py``). Each score is a dot product of
two rows computed by the same kernel whatever the chunk, so chunked scores equal unchunked ones
bit for bit. TAR@FAR is reported in two conventions of :func:`pyfacex.eval.metrics.tar_at_far`:
``"nearest"`` (insightface's IJB table) and ``"interpolated"``.

1:N: IJB-B/C define two disjoint galleries (G1/G2, IJB-B S1/S2) and one probe list; every probe
subject is enrolled in exactly one gallery. The protocol searches the probes in each gallery
separately (probes of the other gallery's subjects are then non-mated) and averages the two
galleries' figures. insightface's ``ijb_1n.py`` instead concatenates both galleries into one, so
every probe is mated and no FPIR can be measured (its "FPIR" counts impostor scores of mated
probes); pyfacex uses the protocol's definition (TPIR@FPIR as in :mod:`pyfacex.eval.ranking`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from ...data._args import check_int, label_vector
from ..metrics import roc, roc_tar_at_far
from ..ranking import IdentificationResult, identification
from .readers import TemplatePairs, TemplateSubjects
from .templates import lookup

__all__ = ["FARS", "TAR_CONVENTIONS", "TemplateVerificationResult", "OpenSetResult", "score_pairs", "verify_templates",
           "identify_templates"]

FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
TAR_CONVENTIONS = ("nearest", "interpolated")


@dataclass
class TemplateVerificationResult:
    """What :func:`verify_templates` measures.

    Attributes:
        scores: (M,) cosine similarity of each pair (the features' float dtype).
        labels: (M,) bool, genuine pairs.
        fars: (F,) float64 target FARs.
        tar: {"nearest": (F,), "interpolated": (F,)} float64 TAR at each FAR (NaN without genuine or
            without impostor pairs).
    """

    scores: torch.Tensor
    labels: torch.Tensor
    fars: torch.Tensor
    tar: dict[str, torch.Tensor]

    def as_dict(self) -> dict:
        """JSON-ready: {"pairs", "genuine", "tar": {convention: {repr(far): tar or None}}}."""
        return {"pairs": len(self.labels), "genuine": int(self.labels.sum()),
                "tar": {c: {repr(f): (v if math.isfinite(v) else None) for f, v in zip(self.fars.tolist(), t.tolist())}
                        for c, t in self.tar.items()}}

    def table(self) -> str:
        """TAR (%) at each FAR, one row per convention."""
        head = ["convention"] + [f"FAR={f:g}" for f in self.fars.tolist()]
        rows = [[c] + ["n/a" if math.isnan(v) else f"{100 * v:.2f}" for v in t.tolist()] for c, t in self.tar.items()]
        widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
        lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in [head] + rows]
        title = f"1:1 verification: {len(self.labels)} pairs, {int(self.labels.sum())} genuine, TAR (%)"
        return "\n".join([title] + lines)


@dataclass
class OpenSetResult:
    """What :func:`identify_templates` measures: each gallery's result and their averages.

    Attributes:
        galleries: {name: :class:`~pyfacex.eval.ranking.IdentificationResult`}.
        rank, tpir, cmc, mean_average_precision: the galleries' mean of each figure.
    """

    galleries: dict[str, IdentificationResult]
    rank: dict[int, float]
    tpir: dict[float, float]
    cmc: torch.Tensor
    mean_average_precision: float

    def as_dict(self) -> dict:
        """JSON-ready: the averages (as ``IdentificationResult.as_dict`` names them) and each gallery's."""
        def number(value: float):
            return value if math.isfinite(value) else None
        return {"rank": {str(k): number(v) for k, v in self.rank.items()},
                "tpir": {repr(f): number(v) for f, v in self.tpir.items()},
                "mAP": number(self.mean_average_precision), "cmc": [number(v) for v in self.cmc.tolist()],
                "galleries": {name: result.as_dict() for name, result in self.galleries.items()}}

    def table(self) -> str:
        """Each gallery's table, then their mean (%)."""
        head = [f"rank-{k}" for k in self.rank] + ["mAP"] + [f"TPIR@FPIR={f:g}" for f in self.tpir]
        values = list(self.rank.values()) + [self.mean_average_precision] + list(self.tpir.values())
        cells = ["n/a" if math.isnan(v) else f"{100 * v:.2f}" for v in values]
        widths = [max(len(h), len(c)) for h, c in zip(head, cells)]
        mean = (f"[mean of {len(self.galleries)} galleries] (%)\n" + "  ".join(h.rjust(w) for h, w in zip(head, widths))
                + "\n" + "  ".join(c.rjust(w) for c, w in zip(cells, widths)))
        return "\n".join([f"[{name}] {result.table()}" for name, result in self.galleries.items()] + [mean])


def _template_table(template_ids, template_feats) -> tuple[torch.Tensor, torch.Tensor]:
    """Template ids ascending and their L2-normalised features, validated."""
    ids = torch.from_numpy(label_vector(template_ids, "template_ids"))
    feats = torch.as_tensor(template_feats).detach().cpu()
    if feats.dim() != 2 or len(feats) != len(ids):
        raise ValueError(f"template_feats: expected ({len(ids)}, d), one row per template id, got shape "
                         f"{tuple(feats.shape)}")
    if not feats.is_floating_point():
        raise TypeError(f"template_feats: expected floating-point features, got {feats.dtype}")
    if feats.dtype in (torch.float16, torch.bfloat16):
        feats = feats.float()
    order = torch.argsort(ids)
    ids, feats = ids[order], feats[order]
    repeated = ids[1:] == ids[:-1]
    if bool(repeated.any()):
        raise ValueError(f"template_ids: template {int(ids[1:][repeated][0])} is listed twice")
    norms = feats.norm(dim=1, keepdim=True)
    bad = ~torch.isfinite(norms.squeeze(1)) | (norms.squeeze(1) == 0)
    if bool(bad.any()):
        raise ValueError(f"template_feats: template {int(ids[bad][0])} has a NaN, inf or all-zero feature")
    return ids, feats / norms


def _pair_table(pairs) -> torch.Tensor:
    table = torch.as_tensor(pairs).detach().cpu()
    if table.numel() == 0:
        table = table.reshape(-1, 2).long()
    if table.dim() != 2 or table.shape[1] != 2 or table.is_floating_point() or table.dtype == torch.bool:
        raise ValueError(f"pairs: expected (M, 2) integer template ids, got {table.dtype} {tuple(table.shape)}")
    return table.long()


def _labels(labels, count: int) -> torch.Tensor:
    if labels is None:
        raise ValueError("labels: expected (M,) genuine flags for the pairs, got None")
    flags = torch.as_tensor(labels).detach().cpu().reshape(-1)
    if flags.dtype != torch.bool:
        if flags.numel() and not bool(((flags == 0) | (flags == 1)).all()):
            raise ValueError("labels: expected booleans or 0/1")
        flags = flags.bool()
    if len(flags) != count:
        raise ValueError(f"labels: expected one label per pair ({count}), got {len(flags)}")
    return flags


def score_pairs(template_ids, template_feats, pairs, *, chunk: int = 8192, progress: bool = False) -> torch.Tensor:
    """Cosine similarity of template pairs, in chunks of pairs with bounded memory.

    Args:
        template_ids: (T,) distinct int template ids.
        template_feats: (T, d) float template features (L2-normalised here).
        pairs: (M, 2) int template ids, or a :class:`TemplatePairs` (errors then name its file and line).
        chunk: pairs scored at once; memory beyond the (M,) scores is 2·chunk·d floats and a
            normalised copy of the (T, d) features, whatever M.
        progress: show a tqdm bar over the chunks.
    Returns:
        (M,) scores in the features' dtype (float32 for half precision); equal bit for bit whatever ``chunk``.
    Raises:
        ValueError naming the argument: a pair naming a template not in ``template_ids`` (naming the
        template id and the pair's index or file and line), repeated template ids, NaN/inf/zero
        template features, shapes that do not match.
    """
    ids, feats = _template_table(template_ids, template_feats)
    if not isinstance(pairs, TemplatePairs):
        pairs = TemplatePairs(_pair_table(pairs), torch.zeros(0, dtype=torch.bool))
    chunk = check_int("chunk", chunk, 1)
    m, d = len(pairs.pairs), feats.shape[1]
    scores = torch.empty(m, dtype=feats.dtype)
    size = min(chunk, m)
    # Reused buffers: fresh tensors of tens of MiB each chunk would be mmapped and faulted in again.
    side_a, side_b = torch.empty(size, d, dtype=feats.dtype), torch.empty(size, d, dtype=feats.dtype)
    for start in tqdm(range(0, m, chunk), desc="1:1 scoring", unit="chunk", disable=not progress):
        block = pairs.pairs[start:start + chunk]
        n = len(block)
        rows, found = lookup(ids, block)
        if not bool(found.all()):
            row, side = (~found).nonzero()[0].tolist()
            raise ValueError(f"pairs: {pairs.where(start + row)}: template {int(block[row, side])} has no features "
                             f"(not in template_ids)")
        torch.index_select(feats, 0, rows[:, 0], out=side_a[:n])
        torch.index_select(feats, 0, rows[:, 1], out=side_b[:n])
        torch.linalg.vecdot(side_a[:n], side_b[:n], out=scores[start:start + n])
    return scores


def verify_templates(template_ids, template_feats, pairs, labels=None, *, fars: Sequence[float] = FARS,
                     chunk: int = 8192, progress: bool = True) -> TemplateVerificationResult:
    """1:1 verification of template pairs by cosine similarity (:func:`score_pairs`) and TAR@FAR.

    Args:
        template_ids: (T,) distinct int template ids.
        template_feats: (T, d) float template features (L2-normalised here).
        pairs: (M, 2) int template ids, or a :class:`TemplatePairs` read from a file (then errors name
            the file and line, and ``labels`` must be None).
        labels: (M,) bool or 0/1, genuine pairs.
        fars: target FARs in [0, 1].
        chunk, progress: as for :func:`score_pairs`.
    Returns:
        :class:`TemplateVerificationResult`: the scores and TAR@FAR in the "nearest" (insightface) and
        "interpolated" conventions (NaN without genuine or without impostor pairs).
    Raises:
        ValueError naming the argument: what :func:`score_pairs` raises, labels that do not match the
        pairs, fars outside [0, 1].
    """
    if isinstance(pairs, TemplatePairs):
        if labels is not None:
            raise ValueError("labels: TemplatePairs carry their labels; expected labels=None")
    else:
        pairs = TemplatePairs(_pair_table(pairs), _labels(labels, len(torch.as_tensor(pairs))))
    targets = torch.as_tensor(fars, dtype=torch.float64).reshape(-1)
    if not bool(((targets >= 0) & (targets <= 1)).all()):
        raise ValueError(f"fars: expected values in [0, 1], got {targets.tolist()}")
    scores = score_pairs(template_ids, template_feats, pairs, chunk=chunk, progress=progress)
    genuine = int(pairs.labels.sum())
    if 0 < genuine < len(scores):
        curve = roc(scores, pairs.labels)             # one sort of the scores for both conventions
        tar = {c: roc_tar_at_far(curve, targets, convention=c) for c in TAR_CONVENTIONS}
    else:
        tar = {c: torch.full((len(targets),), math.nan, dtype=torch.float64) for c in TAR_CONVENTIONS}
    return TemplateVerificationResult(scores, pairs.labels, targets, tar)


def identify_templates(template_ids, template_feats, probes: TemplateSubjects,
                       galleries: Mapping[str, TemplateSubjects], *, ranks: Sequence[int] = (1, 5, 10, 20),
                       fpirs: Sequence[float] = (1e-2, 1e-1), chunk: int = 4096,
                       progress: bool = False) -> OpenSetResult:
    """1:N open-set identification of probe templates in each gallery separately, averaged.

    Args:
        template_ids: (T,) distinct int template ids; template_feats: (T, d) float template features.
        probes: the probe templates and their subjects (e.g. :func:`read_template_subjects` of
            ``*_1N_probe_mixed.csv``).
        galleries: {name: gallery templates and subjects}, e.g. {"G1": ..., "G2": ...}.
        ranks, fpirs, chunk, progress: as for :func:`pyfacex.eval.identification`.
    Returns:
        :class:`OpenSetResult`: each gallery's rank-k, CMC, mAP and TPIR@FPIR, and their means.
    Raises:
        ValueError: no gallery; a probe or gallery template without features (naming the template
        id and the list's file); what :func:`~pyfacex.eval.identification` raises.
    """
    if not galleries:
        raise ValueError("galleries: expected at least one gallery, got none")
    ids, feats = _template_table(template_ids, template_feats)

    def rows(subjects: TemplateSubjects, name: str) -> torch.Tensor:
        found_rows, found = lookup(ids, subjects.template_ids)
        if not bool(found.all()):
            missing = int(subjects.template_ids[~found][0])
            place = f" ({subjects.where(missing)})" if subjects.source is not None else ""
            raise ValueError(f"{name}: template {missing}{place} has no features (not in template_ids)")
        return found_rows

    probe_feats = feats[rows(probes, "probes")]
    results = {name: identification(probe_feats, probes.subject_ids, feats[rows(gallery, f"galleries[{name!r}]")],
                                    gallery.subject_ids, ranks=ranks, fpirs=fpirs, chunk=chunk, progress=progress)
               for name, gallery in galleries.items()}
    first = next(iter(results.values()))
    count = len(results)
    return OpenSetResult(
        galleries=results,
        rank={k: sum(r.rank[k] for r in results.values()) / count for k in first.rank},
        tpir={f: sum(r.tpir[f] for r in results.values()) / count for f in first.tpir},
        cmc=torch.stack([r.cmc for r in results.values()]).mean(0),
        mean_average_precision=sum(r.mean_average_precision for r in results.values()) / count)
