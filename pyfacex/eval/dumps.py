"""Score and feature dumps of an evaluation run, and the comparison of several runs.

A run folder (``pyfacex eval MODEL ... --out DIR``) holds ``results.json`` and, per protocol:

- ``scores/<protocol>.npy``: float64 (M,) pair scores in the protocol's pair order (IJB-B/C: the
  template pairs of ``*_template_pair_label.txt``, as insightface's ``eval_ijbc.py`` saves
  ``<target>.npy``), and ``scores/<protocol>_label.npy``: bool (M,), genuine or not;
- ``features/<protocol>_<name>.npy``: the features scored (:attr:`ProtocolResult.features`), e.g.
  ``lfw_embeddings.npy`` (2P, d), ``IJBC_template_feats.npy`` (T, d) with ``IJBC_template_ids.npy``,
  ``ijba_template_feats.npy`` with ``ijba_template_ids.npy`` and ``ijba_template_splits.npy``,
  ``tinyface_probe_feats.npy`` with ``tinyface_probe_labels.npy`` (and the gallery's).

:func:`compare_runs` reads several such folders back into one table and ROC overlays
(``pyfacex eval --compare DIR DIR ...``) without running any model.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .protocols import ProtocolResult
from .report import ResultsTable
from .summary import file_name, save_roc_overlays

__all__ = ["RESULTS_FILE", "compare_runs", "read_scores", "save_dumps"]

RESULTS_FILE = "results.json"
_SCORES, _FEATURES, _LABEL = "scores", "features", "_label"


def save_dumps(results: Sequence[ProtocolResult], out: str | os.PathLike) -> list[Path]:
    """Write the scores, labels and features of ``results`` under ``out`` (module docstring); returns the files."""
    out = Path(out)
    written = []
    for result in results:
        name = file_name(result.name)
        arrays = {}
        if result.scores is not None and result.is_genuine is not None:
            arrays[out / _SCORES / f"{name}.npy"] = np.asarray(result.scores, dtype=np.float64)
            arrays[out / _SCORES / f"{name}{_LABEL}.npy"] = np.asarray(result.is_genuine, dtype=bool)
        for key, array in result.features.items():
            arrays[out / _FEATURES / f"{name}_{file_name(key)}.npy"] = np.asarray(array)
        for path, array in arrays.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, array)
            written.append(path)
    return written


def read_scores(folder: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """protocol file name -> (scores (M,), is_genuine (M,)) of a run folder's ``scores/`` (module docstring).

    Raises:
        ValueError naming the file when a score file has no label file or their lengths differ.
    """
    found = {}
    for path in sorted((Path(folder) / _SCORES).glob("*.npy")):
        if path.stem.endswith(_LABEL):
            continue
        labels = path.with_name(f"{path.stem}{_LABEL}.npy")
        if not labels.is_file():
            raise ValueError(f"{path}: has no {labels.name} beside it (expected the pairs' genuine flags)")
        scores, is_genuine = np.load(path), np.load(labels)
        if scores.ndim != 1 or scores.shape != is_genuine.shape:
            raise ValueError(f"{path}: holds {scores.shape} scores but {labels.name} {is_genuine.shape} labels")
        found[path.stem] = (scores, is_genuine.astype(bool))
    return found


def _row_names(tables: list[tuple[Path, ResultsTable]]) -> list[list[str]]:
    """Each run's row names; a name two runs share gets its folder's name appended, ``"model (run_a)"``."""
    counts: dict[str, int] = {}
    for _, table in tables:
        for name, _cells in table.rows:
            counts[name] = counts.get(name, 0) + 1
    return [[name if counts[name] == 1 else f"{name} ({folder.name})" for name, _ in table.rows]
            for folder, table in tables]


def compare_runs(folders: Sequence[str | os.PathLike], out: str | os.PathLike | None = None) -> ResultsTable:
    """One table with the rows of every run folder (module docstring), in the order given; with ``out``,
    also ``out/results.json``, ``out/results.md`` and ``out/roc_<protocol>.png`` with a curve per row for
    every protocol whose scores the runs dumped.

    Raises:
        ValueError naming the argument for fewer than two folders, a folder without ``results.json``,
        or two rows that still share a name.
    """
    if len(folders) < 2:
        raise ValueError(f"--compare: expected at least two run folders, got {len(folders)}")
    tables = []
    for folder in map(Path, folders):
        results = folder / RESULTS_FILE
        if not results.is_file():
            raise ValueError(f"--compare: {folder} has no {RESULTS_FILE} (expected a folder written by "
                             f"pyfacex eval --out)")
        tables.append((folder, ResultsTable.from_json(results.read_text(encoding="utf-8"))))
    table = ResultsTable(title="pyfacex eval --compare: " + ", ".join(str(folder) for folder, _ in tables))
    pairs: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for (folder, run), names in zip(tables, _row_names(tables)):
        for name, (_, cells) in zip(names, run.rows):
            try:
                table.add(name, cells)
            except ValueError as error:
                raise ValueError(f"--compare: {folder}: {error}") from error
        if len(names) == 1:   # a dump belongs to a run's only model (pyfacex eval writes one row)
            for protocol, scored in read_scores(folder).items():
                pairs.setdefault(protocol, {})[names[0]] = scored
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        table.save(out / RESULTS_FILE)
        table.save(out / "results.md")
        save_roc_overlays(pairs, out)
    return table
