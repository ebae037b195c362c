"""One results table (and ROC curves) for several models over several protocols: what ``pyfacex
eval`` and ``pyfacex demo`` print and save."""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .ijb import IJBA_FARS
from .metrics import roc
from .protocols import VERIFICATION_KINDS, ProtocolResult
from .report import ResultsTable, save_roc_png, tar_column

__all__ = ["file_name", "protocol_cells", "save_roc_overlays", "save_summary", "summarize"]

_VERIFICATION_FARS = (1e-4, 1e-3)
_IJB_FARS = (1e-5, 1e-4, 1e-3)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def protocol_cells(result: ProtocolResult) -> dict[str, object]:
    """The table cells of one :class:`ProtocolResult`: ``"<name> <metric>"`` -> value.

    Verification kinds: accuracy (mean, std), AUC, EER, TAR@FAR 1e-4 and 1e-3 (interp.) where the
    protocol has at least 1/FAR impostor pairs (LFW's 3000 resolve 1e-3, not 1e-4); TinyFace: rank-1,
    rank-3, rank-5 (LGAF, Tab. 6), mAP; IJB-A: TAR@FAR 1e-3, 1e-2, 1e-1 (interp.) as mean ± std over
    the splits (LFENet, Tab. I, III); IJB-B/C: TAR@FAR 1e-5, 1e-4, 1e-3 (nearest), rank-1. Undefined
    values (NaN) become None (shown ``-``).
    """
    metrics = result.metrics
    if result.kind in VERIFICATION_KINDS:
        cells = {"accuracy": (metrics["accuracy"], metrics["accuracy_std"]), "AUC": metrics["auc"],
                 "EER": metrics["eer"]}
        impostors = int((~result.is_genuine).sum()) if result.is_genuine is not None else 0
        keys = [tar_column(far) for far in _VERIFICATION_FARS if far * impostors >= 1]
    elif result.kind == "tinyface":
        cells, keys = {}, ["rank-1", "rank-3", "rank-5", "mAP"]
    elif result.kind == "ijba":
        columns = [tar_column(far) for far in IJBA_FARS]
        cells, keys = {key: (metrics[key], metrics[key + " std"]) for key in columns if key in metrics}, []
    else:
        cells, keys = {}, [tar_column(far, "nearest") for far in _IJB_FARS] + ["rank-1"]
    cells.update({key: metrics[key] for key in keys if key in metrics})
    out = {}
    for column, value in cells.items():
        if isinstance(value, tuple):
            value = None if not all(math.isfinite(v) for v in value) else value
        else:
            value = _finite(float(value))
        out[f"{result.name} {column}"] = value
    return out


def summarize(rows: Mapping[str, Sequence[ProtocolResult]], title: str | None = None,
              extra: Mapping[str, Mapping[str, object]] | None = None) -> ResultsTable:
    """A :class:`ResultsTable` with one row per model (``rows``: model -> its protocol results) and
    ``extra`` cells per model (e.g. parameter counts) before the protocol columns."""
    table = ResultsTable(title=title)
    for model, results in rows.items():
        cells = dict((extra or {}).get(model, {}))
        for result in results:
            cells.update(protocol_cells(result))
        table.add(model, cells)
    return table


def file_name(name: str) -> str:
    """``name`` made safe as a file name (runs of other characters become ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "protocol"


def save_roc_overlays(pairs: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]], out: str | os.PathLike,
                      titles: Mapping[str, str] | None = None) -> list[Path]:
    """One ``out/roc_<protocol>.png`` per protocol with a curve per model.

    Args:
        pairs: protocol -> model -> (scores (M,), is_genuine (M,) bool); protocols without both
            genuine and impostor pairs are left out.
        out: the folder. titles: protocol -> plot title (default: the protocol's name).
    The FAR axis starts at the decade of the smallest FAR the protocol's impostor pairs can measure.
    """
    written = []
    for name, by_model in pairs.items():
        curves, impostors = {}, 0
        for model, (scores, is_genuine) in by_model.items():
            is_genuine = np.asarray(is_genuine, dtype=bool)
            if is_genuine.all() or not is_genuine.any():
                continue
            curves[model] = roc(torch.from_numpy(np.asarray(scores, dtype=np.float64)), torch.from_numpy(is_genuine))
            impostors = max(impostors, int((~is_genuine).sum()))
        if curves:
            lowest = 10.0 ** math.floor(math.log10(1.0 / impostors))
            written.append(save_roc_png(curves, Path(out) / f"roc_{file_name(name)}.png",
                                        title=(titles or {}).get(name, name), far_range=(lowest, 1.0)))
    return written


def save_summary(table: ResultsTable, rows: Mapping[str, Sequence[ProtocolResult]],
                 out: str | os.PathLike) -> list[Path]:
    """Write ``out/results.json`` (``ResultsTable.from_json`` reads it), ``out/results.md`` and, per
    protocol with genuine and impostor pair scores, ``out/roc_<protocol>.png`` with every model's curve."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [table.save(out / "results.json"), table.save(out / "results.md")]
    pairs: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    titles: dict[str, str] = {}
    for model, results in rows.items():
        for result in results:
            if result.scores is not None and result.is_genuine is not None:
                pairs.setdefault(result.name, {})[model] = (result.scores, result.is_genuine)
                titles[result.name] = f"{result.name} ({result.kind})"
    return written + save_roc_overlays(pairs, out, titles)
