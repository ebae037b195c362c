"""Reports: results tables (text, Markdown, JSON) and ROC / CMC curves as PNG.

A :class:`ResultsTable` has one row per model or protocol and one column per metric. A column that
shows TAR@FAR must say its convention (:mod:`pyfacex.eval.metrics`): build its name with
:func:`tar_column`, e.g. ``"TAR@FAR=1e-4 (interp.)"``; the table refuses a TAR@FAR column without one.

Plots need matplotlib, an optional dependency (``pip install pyfacex[plot]``); it is imported only
when a plot is drawn, with no global backend change (figures render through the Agg canvas).
"""
from __future__ import annotations

import json
import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from . import metrics

__all__ = ["CONVENTION_LABELS", "tar_column", "score_metrics", "ResultsTable", "save_roc_png", "save_cmc_png",
           "save_bar_png"]

CONVENTION_LABELS = {"interpolated": "interp.", "nearest": "nearest", "at_most": "at most"}
"""How a column name spells each TAR@FAR convention of :mod:`pyfacex.eval.metrics`."""

_TAR_COLUMN = re.compile(r"TAR\s*@\s*FAR", re.IGNORECASE)


def _far_text(far: float) -> str:
    mantissa, exponent = f"{far:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}" if far > 0 else "0"


def tar_column(far: float, convention: str = "interpolated") -> str:
    """Column name of TAR at ``far`` read in ``convention``: ``tar_column(1e-4) == "TAR@FAR=1e-4 (interp.)"``."""
    if convention not in CONVENTION_LABELS:
        raise ValueError(f"convention: expected one of {', '.join(CONVENTION_LABELS)}, got {convention!r}")
    if isinstance(far, bool) or not isinstance(far, numbers.Real) or not 0 <= far <= 1:
        raise ValueError(f"far: expected a number in [0, 1], got {far!r}")
    return f"TAR@FAR={_far_text(float(far))} ({CONVENTION_LABELS[convention]})"


def score_metrics(scores, is_genuine, fars: Sequence[float] = (1e-4, 1e-3, 1e-2),
                  conventions: Sequence[str] = ("interpolated",)) -> dict[str, float]:
    """AUC, EER and TAR@FAR of similarity scores, keyed by column names for a :class:`ResultsTable`.

    Args:
        scores: (N,) similarities; is_genuine: (N,) bool. fars: target FARs; conventions: each a
            convention of :func:`pyfacex.eval.metrics.tar_at_far`.
    Returns:
        ``{"AUC": .., "EER": .., tar_column(far, convention): .., ...}``, floats.
    """
    out = {"AUC": metrics.auc(scores, is_genuine), "EER": metrics.eer(scores, is_genuine)}
    for convention in conventions:
        tars = metrics.tar_at_far(scores, is_genuine, list(fars), convention)
        out.update({tar_column(far, convention): float(tar) for far, tar in zip(fars, tars.tolist())})
    return out


def _align(row: list[str], widths: list[int]) -> str:
    return "  ".join([row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])])


def _cell_value(value, where: str):
    """A table value: None, str, int, float, or (mean, std) as a tuple of floats."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (tuple, list)) and len(value) == 2:
        pair = tuple(_cell_value(v, where) for v in value)
        if not all(isinstance(v, (int, float)) for v in pair):
            raise TypeError(f"{where}: a (mean, std) pair must hold two numbers, got {value!r}")
        return pair
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: expected a number, a (mean, std) pair, a string or None, got "
                        f"{type(value).__name__} {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, got {value}")
    return float(value)


class ResultsTable:
    """Rows = models or protocols, columns = metrics; rendered as text, Markdown or JSON.

    Args:
        columns: the metric columns, in order (more are appended as rows name them).
        index: the header of the row-name column. title: optional caption.

    Cells hold a number, a ``(mean, std)`` pair (shown ``mean ± std``), a string, or None (shown
    ``-``, a metric the row lacks).
    """

    def __init__(self, columns: Sequence[str] = (), index: str = "model", title: str | None = None):
        self.index, self.title = str(index), title
        self.columns: list[str] = []
        self.rows: list[tuple[str, dict]] = []
        for column in columns:
            self._add_column(column)

    def _add_column(self, column: str) -> None:
        if not isinstance(column, str) or not column:
            raise TypeError(f"column: expected a non-empty string, got {column!r}")
        if _TAR_COLUMN.search(column) and not any(f"({label})" in column for label in CONVENTION_LABELS.values()):
            raise ValueError(f"column {column!r} shows TAR@FAR without its convention: name it with "
                             f"tar_column(far, convention), e.g. {tar_column(1e-4)!r}")
        if column not in self.columns:
            self.columns.append(column)

    def add(self, name: str, values: Mapping[str, object] | None = None, **more) -> ResultsTable:
        """Append row ``name`` with ``values`` (column -> cell) and keyword cells; returns self."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"name: expected a non-empty string, got {name!r}")
        if any(name == existing for existing, _ in self.rows):
            raise ValueError(f"name: row {name!r} is already in the table")
        cells = {**dict(values or {}), **more}
        for column in cells:
            self._add_column(column)
        self.rows.append((name, {c: _cell_value(v, f"row {name!r}, column {c!r}") for c, v in cells.items()}))
        return self

    # ------------------------------------------------------------------------------------- rendering

    @staticmethod
    def _format(value, precision: int) -> str:
        if value is None:
            return "-"
        if isinstance(value, tuple):
            return " ± ".join(ResultsTable._format(v, precision) for v in value)
        if isinstance(value, float):
            return f"{value:.{precision}f}"
        return str(value)

    def _grid(self, precision: int) -> list[list[str]]:
        header = [self.index, *self.columns]
        return [header] + [[name, *(self._format(cells.get(c), precision) for c in self.columns)]
                           for name, cells in self.rows]

    def to_text(self, precision: int = 4) -> str:
        """Aligned plain text: names left-aligned, values right-aligned, two spaces between columns."""
        grid = self._grid(precision)
        widths = [max(len(row[k]) for row in grid) for k in range(len(grid[0]))]
        rule = "  ".join("-" * w for w in widths)
        lines = [_align(grid[0], widths), rule, *(_align(row, widths) for row in grid[1:])]
        return "\n".join(([self.title] if self.title else []) + lines)

    def to_markdown(self, precision: int = 4) -> str:
        """A GitHub Markdown table (value columns right-aligned); ``|`` in cells is escaped."""
        grid = [[cell.replace("|", "\\|") for cell in row] for row in self._grid(precision)]
        lines = ["| " + " | ".join(grid[0]) + " |", "|" + "|".join([" --- "] + [" ---: "] * len(self.columns)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in grid[1:]]
        return "\n".join(([f"**{self.title}**", ""] if self.title else []) + lines)

    def to_dict(self) -> dict:
        """JSON-ready: title, index, columns, rows [{"name", "values": {column: cell}}]; pairs as lists."""
        return {"title": self.title, "index": self.index, "columns": list(self.columns),
                "rows": [{"name": name, "values": {c: list(v) if isinstance(v, tuple) else v for c, v in cells.items()}}
                         for name, cells in self.rows]}

    def to_json(self, indent: int | None = 2) -> str:
        """The table as JSON text (:meth:`to_dict`); :meth:`from_json` reads it back."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, document: Mapping) -> ResultsTable:
        """The table :meth:`to_dict` described."""
        try:
            table = cls(document["columns"], index=document["index"], title=document.get("title"))
            for row in document["rows"]:
                table.add(row["name"], row["values"])
        except (KeyError, TypeError) as error:
            raise ValueError(f"document: not a results table ({error!r})") from error
        return table

    @classmethod
    def from_json(cls, text: str) -> ResultsTable:
        """The table :meth:`to_json` wrote."""
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike, precision: int = 4) -> Path:
        """Write the table as ``.json``, ``.md`` or text (any other suffix), by ``path``'s suffix."""
        path = Path(path)
        suffix = path.suffix.lower()
        text = (self.to_json() if suffix == ".json" else self.to_markdown(precision) if suffix == ".md"
                else self.to_text(precision))
        path.write_text(text + "\n", encoding="utf-8")
        return path

    def __eq__(self, other) -> bool:
        return isinstance(other, ResultsTable) and self.to_dict() == other.to_dict()

    def __str__(self) -> str:
        return self.to_text()


# ----------------------------------------------------------------------------------------------- plots

def _figure(caller: str):
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(f"{caller} needs matplotlib, an optional dependency: pip install matplotlib "
                          "(or pip install pyfacex[plot])") from error
    return Figure(figsize=(6, 4.5), dpi=120)


def _curve(value, label: str, what: str) -> tuple[list[float], list[float]]:
    if isinstance(value, metrics.ROC):
        x, y = value.far, value.tar
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        x, y = (torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in value)
    else:
        y = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
        x = torch.arange(1, len(y) + 1, dtype=torch.float64)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"curves[{label!r}]: expected {what} of equal non-zero length, got {len(x)} and {len(y)}")
    return x.tolist(), y.tolist()


def _save(figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def _finish(figure, axes, path, xlabel: str, ylabel: str, legend: bool, title: str | None) -> Path:
    """Rates axis, labels, legend and title shared by the curve plots; saves the PNG."""
    axes.set_ylim(0, 1.01)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if legend:
        axes.legend(loc="lower right")
    if title:
        axes.set_title(title)
    return _save(figure, path)


def save_roc_png(curves: Mapping[str, object], path: str | os.PathLike, *, title: str | None = None,
                 log_far: bool = True, far_range: tuple[float, float] = (1e-6, 1.0)) -> Path:
    """Plot ROC curves (TAR against FAR) into a PNG.

    Args:
        curves: label -> a :class:`pyfacex.eval.metrics.ROC` or a pair (far (K,), tar (K,)).
        path: the PNG file. title: optional. log_far: FAR on a log axis (points with FAR 0 are not
            drawn there), limited to ``far_range``.
    Returns:
        ``Path(path)``.
    Raises:
        ImportError telling how to install matplotlib when it is missing.
    """
    figure = _figure("save_roc_png")
    axes = figure.add_subplot()
    for label, value in curves.items():
        far, tar = _curve(value, label, "far and tar")
        axes.plot(far, tar, label=str(label), linewidth=1.5)
    if log_far:
        axes.set_xscale("log")
        axes.set_xlim(*far_range)
    axes.grid(True, which="both", alpha=0.3)
    return _finish(figure, axes, path, "False accept rate (FAR)", "True accept rate (TAR)", bool(curves), title)


def save_cmc_png(curves: Mapping[str, object], path: str | os.PathLike, *, title: str | None = None,
                 max_rank: int | None = None) -> Path:
    """Plot CMC curves (identification rate against rank) into a PNG.

    Args:
        curves: label -> (K,) identification rates at ranks 1..K (e.g. ``cmc`` of
            :func:`pyfacex.eval.identification`), or a pair (ranks (K,), rates (K,)).
        path: the PNG file. title: optional. max_rank: draw ranks up to this one (default all).
    Returns:
        ``Path(path)``.
    Raises:
        ImportError telling how to install matplotlib when it is missing.
    """
    figure = _figure("save_cmc_png")
    axes = figure.add_subplot()
    for label, value in curves.items():
        ranks, rates = _curve(value, label, "ranks and rates")
        keep = [k for k, rank in enumerate(ranks) if max_rank is None or rank <= max_rank]
        axes.plot([ranks[k] for k in keep], [rates[k] for k in keep], label=str(label), linewidth=1.5,
                  marker="." if len(keep) <= 50 else None)
    from matplotlib.ticker import MaxNLocator  # matplotlib is present: _figure imported it

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, alpha=0.3)
    return _finish(figure, axes, path, "Rank", "Identification rate", bool(curves), title)


def save_bar_png(bars: Mapping[str, tuple[float, float | None, Sequence[float]]], path: str | os.PathLike, *,
                 title: str | None = None, ylabel: str = "") -> Path:
    """Plot one bar per label with its error bar and the individual values as dots into a PNG.

    Args:
        bars: label -> (height, error half-width or None, the values it summarises (drawn as dots)),
            in drawing order (e.g. a metric's mean over seeds, its 95 % CI half-width, the seeds' values).
        path: the PNG file. title, ylabel: optional.
    Returns:
        ``Path(path)``.
    Raises:
        ImportError telling how to install matplotlib when it is missing.
    """
    figure = _figure("save_bar_png")
    axes = figure.add_subplot()
    for k, (label, (height, error, values)) in enumerate(bars.items()):
        axes.bar(k, height, width=0.6, yerr=None if error is None else [[error], [error]], capsize=6,
                 color=f"C{k % 10}", alpha=0.75)
        axes.plot([k] * len(values), list(values), "k.", markersize=5)
    axes.set_xticks(range(len(bars)), [str(label) for label in bars], rotation=20, ha="right")
    axes.set_ylabel(ylabel)
    axes.grid(True, axis="y", alpha=0.3)
    if title:
        axes.set_title(title)
    return _save(figure, path)
