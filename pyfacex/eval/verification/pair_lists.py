"""Readers of the verification pair lists users hold: LFW's ``pairs.txt`` and CFP's ``Protocol/``.

Both return a :class:`PairList` that keeps the benchmark's own folds, so that
``verify_pairs(..., fold_ids=pair_list.fold_ids)`` tests on the published splits.

LFW (README of the LFW release, section 3c; View 2 ``pairs.txt``, View 1 ``pairsDevTrain.txt`` /
``pairsDevTest.txt``): a header ``<folds>\\t<n>`` (View 1: just ``<n>``, one fold), then per fold
``n`` matched lines ``name\\tn1\\tn2`` and ``n`` mismatched lines ``name1\\tn1\\tname2\\tn2``; image
``k`` of ``name`` is ``<image_root>/<name>/<name>_<kkkk>.jpg``.

CFP (the dataset's ``Readme.txt``): ``Protocol/Pair_list_F.txt`` and ``Pair_list_P.txt`` list the
frontal and profile images as ``<index> <path>``, the path relative to ``Protocol/``;
``Protocol/Split/<FP|FF>/<fold>/same.txt`` and ``diff.txt`` hold ``i,j`` lines, ``i`` a frontal
index and ``j`` a profile (FP) or frontal (FF) index. Folds are the split folders in name order;
within a fold the same pairs come first (insightface's ``cfp_fp.bin`` order).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import torch

__all__ = ["PairList", "read_lfw_pairs", "read_cfp_pairs"]


class PairList(NamedTuple):
    """P verification pairs read from a benchmark's files.

    paths_a, paths_b: P image paths each; issame: bool (P,); fold_ids: int64 (P,), the benchmark's
    fold of each pair (0-based, in file order).
    """

    paths_a: list[Path]
    paths_b: list[Path]
    issame: torch.Tensor
    fold_ids: torch.Tensor


def _lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped text) of the non-blank lines of a text file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pair list file does not exist")
    text = path.read_text(encoding="utf-8", errors="replace")
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def _positive_int(text: str, where: str, what: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{where}: expected {what} as a positive integer, got {text!r}")
    return int(text)


def _check_exists(path: Path, where: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{where}: image {path} does not exist")


def read_lfw_pairs(pairs_file: str | os.PathLike, image_root: str | os.PathLike | None = None, *,
                   suffix: str = ".jpg", check_files: bool = True) -> PairList:
    """Read LFW's ``pairs.txt`` (View 2) or ``pairsDevTrain.txt`` / ``pairsDevTest.txt`` (View 1).

    Args:
        pairs_file: the pair list.
        image_root: the folder holding ``<name>/<name>_<kkkk><suffix>`` (default: ``lfw`` beside
            ``pairs_file``, as the release unpacks).
        suffix: the image file suffix (aligned copies of LFW are sometimes PNG).
        check_files: raise if an image of a pair does not exist.
    Returns:
        :class:`PairList`, pairs in file order; fold f holds lines of block f.
    Raises:
        FileNotFoundError (the file, or an image: names the line), ValueError naming the file and
        line (a header that is not ``folds n``, a line that is not the pair the block expects, a
        count of lines that disagrees with the header).
    """
    pairs_file = Path(pairs_file)
    root = Path(image_root) if image_root is not None else pairs_file.parent / "lfw"
    lines = _lines(pairs_file)
    if not lines:
        raise ValueError(f"{pairs_file}: empty pair list, expected a header '<folds> <n>'")
    number, header = lines[0]
    fields = header.split()
    if len(fields) not in (1, 2):
        raise ValueError(f"{pairs_file} line {number}: expected a header '<folds> <n>' or '<n>', got {header!r}")
    counts = [_positive_int(field, f"{pairs_file} line {number}", "the header") for field in fields]
    folds, per_fold = (1, counts[0]) if len(counts) == 1 else counts
    body = lines[1:]
    if len(body) != 2 * folds * per_fold:
        raise ValueError(f"{pairs_file}: the header announces {folds} folds x 2 x {per_fold} pairs = "
                         f"{2 * folds * per_fold} lines, the file has {len(body)} pair lines")

    def image(name: str, k: str, where: str) -> Path:
        path = root / name / f"{name}_{_positive_int(k, where, 'an image number'):04d}{suffix}"
        if check_files:
            _check_exists(path, where)
        return path

    paths_a, paths_b, same = [], [], []
    for index, (number, line) in enumerate(body):
        where = f"{pairs_file} line {number}"
        matched = index % (2 * per_fold) < per_fold
        fields = line.split()
        if matched and len(fields) == 3:
            name, k1, k2 = fields
            paths_a.append(image(name, k1, where))
            paths_b.append(image(name, k2, where))
        elif not matched and len(fields) == 4:
            name1, k1, name2, k2 = fields
            paths_a.append(image(name1, k1, where))
            paths_b.append(image(name2, k2, where))
        else:
            expected = "a matched pair 'name n1 n2'" if matched else "a mismatched pair 'name1 n1 name2 n2'"
            raise ValueError(f"{where}: expected {expected} (each fold lists {per_fold} matched, then "
                             f"{per_fold} mismatched pairs), got {line!r}")
        same.append(matched)
    fold_ids = torch.arange(len(body), dtype=torch.int64) // (2 * per_fold)
    return PairList(paths_a, paths_b, torch.tensor(same, dtype=torch.bool), fold_ids)


def _image_list(path: Path, protocol_dir: Path, check_files: bool) -> dict[int, tuple[Path, int]]:
    """CFP ``Pair_list_*.txt``: index -> (image path, line number)."""
    images: dict[int, tuple[Path, int]] = {}
    for number, line in _lines(path):
        where = f"{path} line {number}"
        fields = line.split(maxsplit=1)
        if len(fields) != 2:
            raise ValueError(f"{where}: expected '<index> <path>', got {line!r}")
        index = _positive_int(fields[0], where, "the image index")
        if index in images:
            raise ValueError(f"{where}: index {index} is listed twice (first on line {images[index][1]})")
        image = Path(os.path.normpath(protocol_dir / fields[1].strip()))
        if check_files:
            _check_exists(image, where)
        images[index] = (image, number)
    return images


def read_cfp_pairs(root: str | os.PathLike, protocol: str = "FP", *, check_files: bool = True) -> PairList:
    """Read CFP's frontal-profile (``"FP"``) or frontal-frontal (``"FF"``) protocol.

    Args:
        root: the dataset root holding ``Protocol/`` (and ``Data/``, where the lists point).
        protocol: "FP" or "FF".
        check_files: raise if an image of the lists does not exist.
    Returns:
        :class:`PairList`: fold after fold (split folders in name order), each its same.txt pairs
        then its diff.txt pairs; side a is the frontal image.
    Raises:
        FileNotFoundError (a missing list or split file, or image), ValueError naming the file and
        line (a malformed line, an index missing from ``Pair_list_F/P.txt``), ValueError when
        ``Split/<protocol>`` holds no fold folders.
    """
    if protocol not in ("FP", "FF"):
        raise ValueError(f"protocol: expected 'FP' or 'FF', got {protocol!r}")
    protocol_dir = Path(root) / "Protocol"
    frontal = _image_list(protocol_dir / "Pair_list_F.txt", protocol_dir, check_files)
    side_b, list_b = ((_image_list(protocol_dir / "Pair_list_P.txt", protocol_dir, check_files), "Pair_list_P.txt")
                      if protocol == "FP" else (frontal, "Pair_list_F.txt"))
    split_dir = protocol_dir / "Split" / protocol
    fold_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir()) if split_dir.is_dir() else []
    if not fold_dirs:
        raise ValueError(f"root: {split_dir} holds no fold folders (expected Split/{protocol}/01 ...)")

    def lookup(images: dict, text: str, where: str, listing: str) -> Path:
        index = _positive_int(text.strip(), where, f"an index of {listing}")
        if index not in images:
            raise ValueError(f"{where}: index {index} is not in {listing}")
        return images[index][0]

    paths_a, paths_b, same, fold_ids = [], [], [], []
    for fold, fold_dir in enumerate(fold_dirs):
        for name, label in (("same.txt", True), ("diff.txt", False)):
            split_file = fold_dir / name
            for number, line in _lines(split_file):
                where = f"{split_file} line {number}"
                fields = line.split(",")
                if len(fields) != 2:
                    raise ValueError(f"{where}: expected 'i,j', got {line!r}")
                paths_a.append(lookup(frontal, fields[0], where, "Pair_list_F.txt"))
                paths_b.append(lookup(side_b, fields[1], where, list_b))
                same.append(label)
                fold_ids.append(fold)
    return PairList(paths_a, paths_b, torch.tensor(same, dtype=torch.bool), torch.tensor(fold_ids, dtype=torch.int64))
