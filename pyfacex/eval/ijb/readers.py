"""Readers of the IJB-A/B/C protocol files, in the formats the real releases use.

IJB-B/C as insightface's ``recognition/_evaluation_/ijb/ijb_11.py`` and ``ijb_1n.py`` read them (the
``IJB_release`` layout ``IJBC/meta/``, also written by
:func:`pyfacex.data.synthetic.protocols.write_ijb_like`):

- ``ijbc_face_tid_mid.txt``: ``<image> <template id> <media id>``, space-separated, one line per image;
- ``ijbc_name_5pts_score.txt``: ``<image> x1 y1 ... x5 y5 <detector score>``, the same images in the
  same order (insightface reads the two files separately and relies on that; the end-to-end
  evaluation checks it);
- ``ijbc_template_pair_label.txt``: ``<template 1> <template 2> <label>``, label 1 = genuine;
- 1:N: ``ijbc_1N_gallery_G1.csv``, ``_G2.csv`` (IJB-B: ``ijbb_1N_gallery_S1.csv``, ``_S2.csv``) and
  ``*_1N_probe_mixed.csv``: a header ``TEMPLATE_ID,SUBJECT_ID,FILENAME,...`` and one row per image.

IJB-A's ``IJB-A_11_sets/split{n}/``: ``train_{n}.csv`` and ``verify_metadata_{n}.csv`` with a header
``TEMPLATE_ID,SUBJECT_ID,FILE,MEDIA_ID,SIGHTING_ID,FRAME,FACE_X,...`` and one row per image (video
frames share a MEDIA_ID), and ``verify_comparisons_{n}.csv``: ``<template 1>,<template 2>`` per line,
no header; a pair is genuine when both templates have the same SUBJECT_ID (IJB-A ships no labels).
The 1:N files ``IJB-A_1N_sets/split{n}/search_{gallery,probe}_{n}.csv`` have the same columns and
read with :func:`read_ijba_metadata`.

Every error names the file and the (1-based) line.
"""
from __future__ import annotations

import csv
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .templates import lookup

__all__ = ["FaceTidMid", "FivePoints", "TemplatePairs", "TemplateSubjects", "IJBAMetadata", "IJBASplit",
           "read_face_tid_mid", "read_name_5pts_score", "read_template_pairs", "read_template_subjects",
           "read_ijba_metadata", "read_ijba_comparisons", "read_ijba_split"]


@dataclass
class FaceTidMid:
    """``*_face_tid_mid.txt``: images (N names), template_ids (N,) int64, media_ids (N,) int64."""

    images: list[str]
    template_ids: torch.Tensor
    media_ids: torch.Tensor
    source: Path


@dataclass
class FivePoints:
    """``*_name_5pts_score.txt``: images (N names), points (N, 5, 2) float32 (x, y in the crop's pixels:
    left eye, right eye, nose, left and right mouth corner), scores (N,) float32 detector scores."""

    images: list[str]
    points: torch.Tensor
    scores: torch.Tensor
    source: Path


@dataclass
class TemplatePairs:
    """Template pairs of a 1:1 protocol: pairs (M, 2) int64 template ids, labels (M,) bool (genuine).

    ``source`` is the file they were read from (None when built in memory) and ``skip`` the lines
    before the first pair; :meth:`line_of` turns a pair index into the file's line for error messages.
    """

    pairs: torch.Tensor
    labels: torch.Tensor
    source: Path | None = None
    skip: int = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def where(self, index: int) -> str:
        """``"file:line"`` of pair ``index`` (or ``"pair index"`` without a file), for error messages."""
        if self.source is None:
            return f"pair {index}"
        return f"{self.source}:{_line_of_row(self.source, index, self.skip)}"


@dataclass
class TemplateSubjects:
    """Templates of a 1:N gallery or probe list: template_ids (T,) int64 ascending, subject_ids (T,) int64."""

    template_ids: torch.Tensor
    subject_ids: torch.Tensor
    source: Path | None = None

    def where(self, template_id: int) -> str:
        """``"file:line"`` of the first row of ``template_id`` (or ``"template <id>"`` without a file)."""
        if self.source is None:
            return f"template {template_id}"
        (t,), body = _csv_rows(self.source, ("TEMPLATE_ID",))
        return f"{self.source}:{next(n for n, f in body if int(f[t]) == template_id)}"


@dataclass
class IJBAMetadata:
    """An IJB-A protocol CSV, one row per image: files (N names, e.g. ``img/533.JPG``,
    ``frame/28337_00300.png``), template_ids, subject_ids, media_ids, sighting_ids: (N,) int64,
    lines (N,) int64, each row's line in ``source``; boxes: (N, 4) float32 face boxes FACE_X,
    FACE_Y (top-left corner), FACE_WIDTH, FACE_HEIGHT in the image's pixels, or None when the
    file has no such columns; landmarks: (N, 3, 2) float32 pixel x, y of RIGHT_EYE (the subject's
    right eye, on the image's left), LEFT_EYE and NOSE_BASE, NaN where the release leaves a row's
    point blank, or None when the file has no such columns."""

    files: list[str]
    template_ids: torch.Tensor
    subject_ids: torch.Tensor
    media_ids: torch.Tensor
    sighting_ids: torch.Tensor
    lines: torch.Tensor
    source: Path
    boxes: torch.Tensor | None = None
    landmarks: torch.Tensor | None = None

    def subjects(self) -> TemplateSubjects:
        """The subject of each template (ascending template ids).

        Raises:
            ValueError naming the file and line of a template listed with two subjects.
        """
        return _template_subjects(self.template_ids, self.subject_ids, self.source, self.lines)


@dataclass
class IJBASplit:
    """One IJB-A 1:1 split: the training images, the verification images and the labelled pairs."""

    train: IJBAMetadata
    metadata: IJBAMetadata
    pairs: TemplatePairs


# ----------------------------------------------------------------------------------------------------
# helpers


def _path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path


def _lines(path: Path):
    """(line number, fields split on whitespace) of every non-blank line."""
    with open(path, encoding="utf-8", newline=None) as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if fields:
                yield number, fields


def _int(text: str, path: Path, line: int, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{path}:{line}: expected an integer {what}, got {text!r}") from None


def _line_of_row(path: Path, row: int, skip: int) -> int:
    """The line number of data row ``row`` (0-based, blank lines not counted) after ``skip`` lines."""
    seen = -1
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if number > skip and line.strip():
                seen += 1
                if seen == row:
                    return number
    raise IndexError(f"{path}: has no data row {row}")


def _int_table(path: Path, columns: int, delimiter: str | None, skip: int, what: str) -> np.ndarray:
    """(rows, columns) int64 of a file of integers; numpy's C parser first (IJB-C has 15.7M pairs),
    a line scan to name the offending line when it refuses."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": an empty list is fine
            table = np.loadtxt(path, dtype=np.int64, delimiter=delimiter, skiprows=skip, ndmin=2, comments=None,
                               encoding="utf-8")
    except ValueError:
        table = None
    if table is not None and table.size == 0:
        return np.zeros((0, columns), dtype=np.int64)
    if table is not None and table.shape[1] == columns:
        return table
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if number <= skip or not line.strip():
                continue
            fields = line.split(delimiter)
            if len(fields) != columns:
                raise ValueError(f"{path}:{number}: expected {what} ({columns} fields), got {line.strip()!r}")
            for field in fields:
                _int(field.strip(), path, number, f"in {what}")
    raise ValueError(f"{path}: cannot read {what}")  # numpy refused a file every line of which parses


def _template_subjects(template_ids: torch.Tensor, subject_ids: torch.Tensor, source: Path | None,
                       lines: torch.Tensor | None) -> TemplateSubjects:
    """One subject per template (rows with their file ``lines``); a template listed with two subjects
    is an error naming the line."""
    unique, inverse = torch.unique(template_ids, return_inverse=True)
    rows = torch.arange(len(template_ids))
    first = torch.full((len(unique),), len(template_ids), dtype=torch.int64).scatter_reduce_(0, inverse, rows, "amin")
    subjects = subject_ids[first]  # each template's subject is that of its first row
    clash = subjects[inverse] != subject_ids
    if bool(clash.any()):
        row = int(clash.nonzero()[0])
        where = f"{source}:{int(lines[row])}" if source is not None and lines is not None else f"row {row}"
        raise ValueError(f"{where}: template {int(template_ids[row])} is listed with subject "
                         f"{int(subject_ids[row])} and with subject {int(subjects[inverse[row]])}")
    return TemplateSubjects(unique, subjects, source)


def _csv_rows(path: Path, needed: tuple[str, ...]):
    """The header's index of each ``needed`` column and the (line number, fields) of every data row."""
    with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: a byte-order mark would hide TEMPLATE_ID
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None:
            raise ValueError(f"{path}:1: expected a header naming {', '.join(needed)}, got an empty file")
        names = [name.strip().upper() for name in header]
        missing = [name for name in needed if name not in names]
        if missing:
            raise ValueError(f"{path}:1: expected a header with the columns {', '.join(needed)}; "
                             f"{', '.join(missing)} missing from {','.join(header)!r}")
        index = [names.index(name) for name in needed]
        body = [(rows.line_num, fields) for fields in rows if any(f.strip() for f in fields)]
    for number, fields in body:
        if len(fields) <= max(index):
            raise ValueError(f"{path}:{number}: expected at least {max(index) + 1} comma-separated fields, "
                             f"got {len(fields)}")
    return index, body


# ----------------------------------------------------------------------------------------------------
# IJB-B / IJB-C


def read_face_tid_mid(path: str | os.PathLike) -> FaceTidMid:
    """Read ``*_face_tid_mid.txt``: ``<image> <template id> <media id>`` per line.

    Raises:
        FileNotFoundError; ValueError naming the file and line of a malformed line.
    """
    path = _path(path)
    images, templates, medias = [], [], []
    for number, fields in _lines(path):
        if len(fields) != 3:
            raise ValueError(f"{path}:{number}: expected '<image> <template id> <media id>', got {' '.join(fields)!r}")
        images.append(fields[0])
        templates.append(_int(fields[1], path, number, "template id"))
        medias.append(_int(fields[2], path, number, "media id"))
    return FaceTidMid(images, torch.tensor(templates, dtype=torch.int64), torch.tensor(medias, dtype=torch.int64),
                      path)


def read_name_5pts_score(path: str | os.PathLike) -> FivePoints:
    """Read ``*_name_5pts_score.txt``: ``<image> x1 y1 ... x5 y5 <score>`` per line.

    Raises:
        FileNotFoundError; ValueError naming the file and line of a malformed line or a non-finite number.
    """
    path = _path(path)
    images, values = [], []
    for number, fields in _lines(path):
        if len(fields) != 12:
            raise ValueError(f"{path}:{number}: expected '<image> x1 y1 ... x5 y5 <score>' (12 fields), "
                             f"got {len(fields)}")
        try:
            row = [float(v) for v in fields[1:]]
        except ValueError:
            raise ValueError(f"{path}:{number}: expected 10 coordinates and a score, got {' '.join(fields[1:])!r}") \
                from None
        if not all(np.isfinite(row)):
            raise ValueError(f"{path}:{number}: expected finite coordinates and score, got {' '.join(fields[1:])!r}")
        images.append(fields[0])
        values.append(row)
    table = torch.tensor(values, dtype=torch.float32).reshape(-1, 11)
    return FivePoints(images, table[:, :10].reshape(-1, 5, 2).contiguous(), table[:, 10].contiguous(), path)


def read_template_pairs(path: str | os.PathLike) -> TemplatePairs:
    """Read ``*_template_pair_label.txt``: ``<template 1> <template 2> <label>`` per line, label 0 or 1.

    Raises:
        FileNotFoundError; ValueError naming the file and line of a malformed line or a label not 0/1.
    """
    path = _path(path)
    table = _int_table(path, 3, None, 0, "'<template 1> <template 2> <label>'")
    bad = (table[:, 2] != 0) & (table[:, 2] != 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path}:{_line_of_row(path, row, 0)}: expected label 0 or 1, got {table[row, 2]}")
    return TemplatePairs(torch.from_numpy(np.ascontiguousarray(table[:, :2])), torch.from_numpy(table[:, 2] == 1),
                         path)


def read_template_subjects(path: str | os.PathLike) -> TemplateSubjects:
    """Read a 1:N gallery or probe CSV (``*_1N_gallery_G1.csv``, ``*_1N_probe_mixed.csv``, ...): the
    TEMPLATE_ID and SUBJECT_ID columns of its rows, one subject per template.

    Raises:
        FileNotFoundError; ValueError naming the file and line: no header with TEMPLATE_ID and
        SUBJECT_ID, a non-integer id, a template listed with two subjects.
    """
    path = _path(path)
    (t, s), body = _csv_rows(path, ("TEMPLATE_ID", "SUBJECT_ID"))
    templates = torch.tensor([_int(f[t].strip(), path, n, "TEMPLATE_ID") for n, f in body], dtype=torch.int64)
    subjects = torch.tensor([_int(f[s].strip(), path, n, "SUBJECT_ID") for n, f in body], dtype=torch.int64)
    return _template_subjects(templates, subjects, path, torch.tensor([n for n, _ in body], dtype=torch.int64))


# ----------------------------------------------------------------------------------------------------
# IJB-A


def read_ijba_metadata(path: str | os.PathLike) -> IJBAMetadata:
    """Read an IJB-A protocol CSV (``train_{n}.csv``, ``verify_metadata_{n}.csv``,
    ``search_gallery_{n}.csv``, ``search_probe_{n}.csv``): columns TEMPLATE_ID, SUBJECT_ID, FILE,
    MEDIA_ID, SIGHTING_ID by their header names, the face box FACE_X, FACE_Y, FACE_WIDTH,
    FACE_HEIGHT when the header has all four, and the three annotated landmarks RIGHT_EYE_X/Y,
    LEFT_EYE_X/Y, NOSE_BASE_X/Y when it has all six (blank values, as the release has on some rows,
    are NaN; the other columns are not read).

    Raises:
        FileNotFoundError; ValueError naming the file and line: a missing column, a non-integer id,
        a box value that is not a finite number or a width or height that is not positive, a
        landmark value that is neither blank nor a finite number.
    """
    path = _path(path)
    names = ("TEMPLATE_ID", "SUBJECT_ID", "FILE", "MEDIA_ID", "SIGHTING_ID")
    (t, s, f, m, g), body = _csv_rows(path, names)
    columns = {name: [] for name in names}
    for number, fields in body:
        for name, i in zip(names, (t, s, f, m, g)):
            value = fields[i].strip()
            columns[name].append(value if name == "FILE" else _int(value, path, number, name))
    ids = {name: torch.tensor(columns[name], dtype=torch.int64) for name in names if name != "FILE"}
    return IJBAMetadata(columns["FILE"], ids["TEMPLATE_ID"], ids["SUBJECT_ID"], ids["MEDIA_ID"], ids["SIGHTING_ID"],
                        torch.tensor([number for number, _ in body], dtype=torch.int64), path, _ijba_boxes(path),
                        _ijba_landmarks(path))


_BOX_COLUMNS = ("FACE_X", "FACE_Y", "FACE_WIDTH", "FACE_HEIGHT")
_LANDMARK_COLUMNS = ("RIGHT_EYE_X", "RIGHT_EYE_Y", "LEFT_EYE_X", "LEFT_EYE_Y", "NOSE_BASE_X", "NOSE_BASE_Y")


def _has_columns(path: Path, columns: tuple[str, ...]) -> bool:
    """Whether the header of the CSV ``path`` names every one of ``columns``."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(f), [])
    return set(columns) <= {name.strip().upper() for name in header}


def _ijba_landmarks(path: Path) -> torch.Tensor | None:
    """(N, 3, 2) float32 landmarks of an IJB-A CSV (NaN where blank), or None without the columns."""
    if not _has_columns(path, _LANDMARK_COLUMNS):
        return None
    columns, body = _csv_rows(path, _LANDMARK_COLUMNS)
    rows = []
    for number, fields in body:
        row = []
        for name, i in zip(_LANDMARK_COLUMNS, columns):
            text = fields[i].strip()
            try:
                value = float(text) if text else math.nan
            except ValueError:
                value = math.inf
            if math.isinf(value) or (text.lower() == "nan"):
                raise ValueError(f"{path}:{number}: expected {name} to be a finite number or blank, got {text!r}")
            row.append(value)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 3, 2)


def _ijba_boxes(path: Path) -> torch.Tensor | None:
    """(N, 4) float32 boxes of an IJB-A CSV, or None when its header lacks a box column."""
    if not _has_columns(path, _BOX_COLUMNS):
        return None
    columns, body = _csv_rows(path, _BOX_COLUMNS)
    boxes = []
    for number, fields in body:
        try:
            box = [float(fields[i]) for i in columns]
        except ValueError:
            box = []
        if len(box) != 4 or not all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
            raise ValueError(f"{path}:{number}: expected a face box FACE_X, FACE_Y, FACE_WIDTH, FACE_HEIGHT of "
                             f"finite numbers with a positive width and height, got "
                             f"{[fields[i].strip() for i in columns]}")
        boxes.append(box)
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def read_ijba_comparisons(path: str | os.PathLike, metadata: IJBAMetadata) -> TemplatePairs:
    """Read ``verify_comparisons_{n}.csv`` (``<template 1>,<template 2>`` per line) and label each pair
    by the templates' subjects in ``metadata`` (same subject = genuine).

    Raises:
        FileNotFoundError; ValueError naming the file and line: a malformed line, a template not in
        ``metadata`` (naming the template id).
    """
    path = _path(path)
    pairs = torch.from_numpy(_int_table(path, 2, ",", 0, "'<template 1>,<template 2>'"))
    subjects = metadata.subjects()
    slot, known = lookup(subjects.template_ids, pairs)
    if not bool(known.all()):
        row, side = (~known).nonzero()[0].tolist()
        raise ValueError(f"{path}:{_line_of_row(path, row, 0)}: template {int(pairs[row, side])} is not in "
                         f"{metadata.source}")
    labels = subjects.subject_ids[slot[:, 0]] == subjects.subject_ids[slot[:, 1]]
    return TemplatePairs(pairs, labels, path)


def read_ijba_split(root: str | os.PathLike, split: int) -> IJBASplit:
    """Read IJB-A 1:1 split ``split`` (1..10) under ``root`` (the ``IJB-A_11_sets`` directory):
    ``split{n}/train_{n}.csv``, ``split{n}/verify_metadata_{n}.csv``, ``split{n}/verify_comparisons_{n}.csv``.

    Raises:
        ValueError for a split outside 1..10; what the readers raise.
    """
    if isinstance(split, bool) or not isinstance(split, int) or not 1 <= split <= 10:
        raise ValueError(f"split: expected an int in 1..10, got {split!r}")
    folder = Path(root) / f"split{split}"
    metadata = read_ijba_metadata(folder / f"verify_metadata_{split}.csv")
    return IJBASplit(read_ijba_metadata(folder / f"train_{split}.csv"), metadata,
                     read_ijba_comparisons(folder / f"verify_comparisons_{split}.csv", metadata))
