"""The PNG plots of a reproduction: per metric, bars of every variant's (and shortcut floor's) mean with
its 95 % CI and the seeds' values; per evaluation with pair scores, their ROC curves (mean TAR over seeds)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..eval.report import save_bar_png, save_roc_png
from ..eval.summary import file_name  # the file-name rule of the eval reports' PNGs
from .spec import ExperimentSpec

__all__ = ["save_plots"]


def save_plots(spec: ExperimentSpec, results: Mapping, cells: Mapping[str, Mapping[int, dict]],
               out: str | Path) -> list[Path]:
    """Write ``out/bars_<metric>.png`` per metric and ``out/roc_<evaluation>.png`` per evaluation whose
    cells saved ROC points (each row's TAR averaged over its seeds on the shared FAR grid). Rows: the
    variants in the table's order, then the shortcut floors (``results["floors"]``); ``cells``: row
    name -> seed -> cell, the floors' included.

    Raises:
        ImportError telling how to install matplotlib when it is missing.
    """
    out = Path(out)
    rows = [(variant.name, results["variants"][variant.name], cells.get(variant.name, {})) for variant in spec.variants]
    rows += [(f"floor: {name}", entry, cells.get(name, {})) for name, entry in results.get("floors", {}).items()]
    written = []
    for metric in spec.metrics:
        bars = {label: (entry[metric.name]["mean"], entry[metric.name]["half_width"],
                        list(entry[metric.name]["values"].values()))
                for label, entry, _ in rows if entry[metric.name].get("n")}
        if bars:
            written.append(save_bar_png(bars, out / f"bars_{file_name(metric.name)}.png",
                                        title=f"{metric.name}: mean and 95 % CI over seeds", ylabel=metric.name))
    for evaluation in spec.evaluations:
        curves = {}
        for label, _, by_seed in rows:
            rocs = [cell["evaluations"][evaluation.name]["roc"] for cell in by_seed.values()]
            rocs = [roc for roc in rocs if roc is not None]
            if rocs:
                curves[label] = (rocs[0]["far"], np.mean([roc["tar"] for roc in rocs], axis=0).tolist())
        if curves:
            lowest = min(x for far, _ in curves.values() for x in far if x > 0)
            written.append(save_roc_png(curves, out / f"roc_{file_name(evaluation.name)}.png",
                                        title=f"{evaluation.name}: mean ROC over seeds", far_range=(lowest, 1.0)))
    return written
