"""The 10-fold verification protocol of LFW, CFP-FP, AgeDB-30, CALFW and CPLFW, as insightface computes it.

insightface (``recognition/arcface_torch/eval/verification.py``, after FaceNet's ``lfw.py``):

- embeddings are L2-normalised; the distance of a pair is the squared L2 distance (0..4), and a
  pair is predicted "same" when ``distance < threshold`` (strictly);
- the P pairs are split by ``KFold(n_splits=folds, shuffle=False)``: contiguous folds in file
  order, the first ``P % folds`` folds one pair larger; with one fold (insightface's ``LFold``) the
  train and test sets are both all pairs;
- accuracy: per fold, the threshold of ``np.arange(0, 4, 0.01)`` with the best accuracy on the
  *training* folds (the first such threshold) is applied to the test fold; mean and (population)
  std of the fold accuracies;
- VAL@FAR (``calculate_val``): per fold, the FAR of every threshold of ``np.arange(0, 4, 0.001)``
  on the training folds, and the threshold where FAR = ``far_target`` by
  ``scipy.interpolate.interp1d(far, thresholds, kind='slinear')`` (0 when no threshold reaches
  the target FAR); VAL and FAR of that threshold on the test fold; mean VAL, its std, mean FAR.
  insightface's numbers come from scipy <= 1.8: later scipy refuses the repeated FAR values every
  grid has ("Expect x to not have duplicates", insightface issues #2152, #2290), so the 1.8
  semantics are reproduced here without scipy (:func:`_slinear`).

Where a fold's sets lack a class, insightface divides by zero; here that fold's VAL or FAR is NaN
(and so is the mean), with a warning naming the fold.

On top, from :mod:`pyfacex.eval.metrics` on the cosine similarities of all pairs (no folds): AUC,
EER and TAR@FAR in the ``"interpolated"`` convention.
"""
from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ...data._args import check_int
from .. import metrics

__all__ = ["TAR_FARS", "VerificationResult", "verify_pairs", "kfold_test_sets"]

TAR_FARS = (1e-4, 1e-3, 1e-2, 1e-1)
"""The FARs at which :func:`verify_pairs` reports TAR."""

_TAR_CONVENTION = "interpolated"


@dataclass
class VerificationResult:
    """What :func:`verify_pairs` measures. Distances are squared L2 of L2-normalised embeddings (0..4).

    Attributes:
        accuracy, accuracy_std: mean and population std of ``fold_accuracies`` (fractions, not %).
        fold_accuracies: (F,) float64, test accuracy of each fold.
        thresholds: (F,) float64, the distance threshold each fold's training folds chose.
        val, val_std, far: mean VAL, its std and mean FAR on the test folds at ``far_target``.
        fold_val, fold_far, fold_val_thresholds: (F,) float64, per fold.
        far_target: the FAR that VAL is measured at.
        auc, eer: of the cosine similarities of all pairs.
        tar_at_far: target FAR -> TAR on all pairs, in the ``tar_convention`` convention.
        tar_convention: "interpolated" (see :mod:`pyfacex.eval.metrics`).
        pairs, genuine: number of pairs and of genuine pairs.
    """

    accuracy: float
    accuracy_std: float
    fold_accuracies: torch.Tensor
    thresholds: torch.Tensor
    val: float
    val_std: float
    far: float
    fold_val: torch.Tensor
    fold_far: torch.Tensor
    fold_val_thresholds: torch.Tensor
    far_target: float
    auc: float
    eer: float
    tar_at_far: dict[float, float]
    pairs: int
    genuine: int
    tar_convention: str = _TAR_CONVENTION

    @property
    def folds(self) -> int:
        """Number of folds."""
        return len(self.fold_accuracies)

    def as_dict(self) -> dict:
        """JSON-ready summary: scalars, per-fold lists, and ``tar_at_far`` keyed by ``"1e-04"``-style
        strings with ``tar_at_far_convention`` saying how TAR@FAR was read off the ROC."""
        return {
            "pairs": self.pairs, "genuine": self.genuine, "folds": self.folds,
            "distance": "squared L2 of L2-normalised embeddings", "decision": "same if distance < threshold",
            "accuracy": self.accuracy, "accuracy_std": self.accuracy_std,
            "fold_accuracies": self.fold_accuracies.tolist(), "thresholds": self.thresholds.tolist(),
            "far_target": self.far_target, "val": self.val, "val_std": self.val_std, "far": self.far,
            "fold_val": self.fold_val.tolist(), "fold_far": self.fold_far.tolist(),
            "fold_val_thresholds": self.fold_val_thresholds.tolist(),
            "auc": self.auc, "eer": self.eer,
            "tar_at_far": {f"{far:.0e}": tar for far, tar in self.tar_at_far.items()},
            "tar_at_far_convention": self.tar_convention, "tar_at_far_scores": "cosine, all pairs, no folds",
        }

    def table(self) -> str:
        """A plain-text table of the results (accuracy in %, the TAR@FAR convention named)."""
        rows = [
            ("pairs", f"{self.pairs} ({self.genuine} genuine), {self.folds} folds"),
            ("accuracy", f"{100 * self.accuracy:.4f} ± {100 * self.accuracy_std:.4f} %  "
                         f"(threshold from the training folds)"),
            (f"VAL @ FAR={self.far_target:g}", f"{self.val:.5f} ± {self.val_std:.5f}  (test FAR {self.far:.5f})"),
            ("AUC", f"{self.auc:.5f}"),
            ("EER", f"{self.eer:.5f}"),
        ]
        rows += [(f"TAR @ FAR={far:.0e}", f"{tar:.5f}") for far, tar in self.tar_at_far.items()]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name:<{width}}  {value}" for name, value in rows]
        lines.append(f"TAR@FAR: {self.tar_convention} ROC of the cosine similarities of all pairs (no folds)")
        return "\n".join(lines)


def kfold_test_sets(pairs: int, folds: int) -> list[np.ndarray]:
    """The test indices of each fold of sklearn's ``KFold(n_splits=folds, shuffle=False)``.

    Contiguous runs in order; the first ``pairs % folds`` runs hold one index more. ``folds=1``
    gives one fold with every index (insightface's ``LFold`` then tests on its training set).
    Returns ``folds`` int64 arrays.
    """
    sizes = np.full(folds, pairs // folds, dtype=np.int64)
    sizes[: pairs % folds] += 1
    stops = np.cumsum(sizes)
    return [np.arange(stop - size, stop) for size, stop in zip(sizes, stops)]


def _embeddings(value, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu", torch.float64).numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name}: expected a (P, d) array of numbers, got {type(value).__name__}") from error
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a (P, d) array, got shape {array.shape}")
    bad = ~np.isfinite(array).all(1)
    if bad.any():
        raise ValueError(f"{name}: pair {int(bad.argmax())} has a non-finite embedding (NaN or inf)")
    return array


def _normalise(array: np.ndarray, name: str) -> np.ndarray:
    # sklearn.preprocessing.normalize, as insightface calls it: einsum of squares, sqrt, divide
    norms = np.sqrt(np.einsum("ij,ij->i", array, array))
    zero = norms == 0
    if zero.any():
        raise ValueError(f"{name}: pair {int(zero.argmax())} has a zero-norm embedding, which has no direction")
    return array / norms[:, None]


def _labels(issame, pairs: int) -> np.ndarray:
    if isinstance(issame, torch.Tensor):
        issame = issame.detach().cpu().numpy()
    labels = np.asarray(issame).reshape(-1)
    if labels.dtype != np.bool_:
        if labels.size and not (np.issubdtype(labels.dtype, np.number) and np.isin(labels, (0, 1)).all()):
            raise ValueError("issame: expected booleans (or 0/1)")
        labels = labels.astype(np.bool_)
    if labels.size != pairs:
        raise ValueError(f"issame: expected one label per pair ({pairs}), got {labels.size}")
    return labels


def _grid(values, default: np.ndarray, name: str, minimum: int) -> np.ndarray:
    if values is None:
        return default
    grid = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    if grid.ndim != 1 or grid.size < minimum or not np.isfinite(grid).all():
        raise ValueError(f"{name}: expected a 1-D grid of at least {minimum} finite distances, got "
                         f"shape {grid.shape}")
    return grid


def _fold_test_sets(pairs: int, folds, fold_ids) -> list[np.ndarray]:
    if fold_ids is None:
        folds = check_int("folds", folds, 1)
        if pairs < folds:
            raise ValueError(f"folds: {folds} folds need at least {folds} pairs, got {pairs}")
        return kfold_test_sets(pairs, folds)
    if isinstance(fold_ids, torch.Tensor):
        fold_ids = fold_ids.detach().cpu().numpy()
    ids = np.asarray(fold_ids)
    if ids.ndim != 1 or ids.size != pairs or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise ValueError(f"fold_ids: expected {pairs} integer fold ids (one per pair), got "
                         f"{ids.dtype} {ids.shape}")
    return [np.flatnonzero(ids == fold) for fold in np.unique(ids)]


def _count_below(sorted_values: np.ndarray, thresholds) -> np.ndarray:
    """How many values are < each threshold (the protocol's strict ``distance < threshold``)."""
    return np.searchsorted(sorted_values, thresholds, side="left")


def _slinear(x: np.ndarray, y: np.ndarray, at: float) -> float:
    """``scipy.interpolate.interp1d(x, y, kind='slinear')(at)`` for ``min(x) <= at <= max(x)``.

    interp1d sorts x stably and builds the degree-1 B-spline with knots [x0, x0, ..., x_{n-1},
    x_{n-1}]; evaluation takes the last knot span starting at or before ``at`` (never past the final
    span) and a span of zero width (tied x at the end) contributes zero.
    """
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    j = min(int(np.searchsorted(x, at, side="right")) - 1, len(x) - 2)
    lo, hi = x[j], x[j + 1]
    if hi == lo:
        return 0.0
    w = 1.0 / (hi - lo)
    return float(y[j] * (w * (hi - at)) + y[j + 1] * (w * (at - lo)))


def _rate(count: int, total: int) -> float:
    return count / total if total else float("nan")


def verify_pairs(emb_a, emb_b, issame, folds: int = 10, far_target: float = 1e-3, thresholds=None, *,
                 val_thresholds=None, fold_ids=None, fars=TAR_FARS) -> VerificationResult:
    """insightface's k-fold verification protocol on the embeddings of P pairs (module docstring).

    Args:
        emb_a, emb_b: (P, d) embeddings of the two sides of each pair (tensor or array, any float
            dtype; computed in float64; need not be normalised).
        issame: (P,) bool (or 0/1): whether pair p shows one identity.
        folds: number of contiguous folds (``KFold`` without shuffle), >= 1, at most P.
        far_target: the FAR of VAL@FAR, in [0, 1].
        thresholds: 1-D grid of distance thresholds for accuracy (default ``np.arange(0, 4, 0.01)``).
        val_thresholds: 1-D grid (>= 2 values) for VAL@FAR (default ``np.arange(0, 4, 0.001)``).
        fold_ids: optional (P,) ints: the folds of the benchmark's own files (LFW pairs.txt, CFP
            splits), one fold per distinct value in increasing order; overrides ``folds``.
        fars: the FARs at which TAR is reported (interpolated ROC of all pairs).
    Returns:
        :class:`VerificationResult`.
    Raises:
        ValueError naming the argument: shapes that disagree, a non-finite or zero-norm embedding
        (with the pair index), no pairs, fewer pairs than folds, labels of one class only, a
        ``far_target`` below the smallest training FAR of a custom ``val_thresholds`` grid.
    """
    a, b = _embeddings(emb_a, "emb_a"), _embeddings(emb_b, "emb_b")
    if a.shape != b.shape:
        raise ValueError(f"emb_b: expected the shape of emb_a {a.shape}, got {b.shape}")
    pairs = a.shape[0]
    if pairs == 0:
        raise ValueError("emb_a: no pairs to verify")
    same = _labels(issame, pairs)
    genuine = int(same.sum())
    if genuine in (0, pairs):
        raise ValueError(f"issame: verification needs genuine and impostor pairs, got {genuine} genuine of {pairs}")
    if isinstance(far_target, bool) or not isinstance(far_target, numbers.Real) or not 0 <= far_target <= 1:
        raise ValueError(f"far_target: expected a number in [0, 1], got {far_target!r}")
    grid = _grid(thresholds, np.arange(0, 4, 0.01), "thresholds", 1)
    val_grid = _grid(val_thresholds, np.arange(0, 4, 0.001), "val_thresholds", 2)
    tests = _fold_test_sets(pairs, folds, fold_ids)

    a, b = _normalise(a, "emb_a"), _normalise(b, "emb_b")
    dist = np.sum(np.square(np.subtract(a, b)), 1)

    accuracy, best, val, far, val_at = (np.zeros(len(tests)) for _ in range(5))
    for k, test in enumerate(tests):
        train = np.ones(pairs, dtype=bool)
        if len(tests) > 1:
            train[test] = False
        gen_train, imp_train = np.sort(dist[train & same]), np.sort(dist[train & ~same])
        correct = _count_below(gen_train, grid) + len(imp_train) - _count_below(imp_train, grid)
        best[k] = grid[int(np.argmax(correct))]                           # first best, as np.argmax
        gen_test, imp_test = np.sort(dist[test][same[test]]), np.sort(dist[test][~same[test]])
        tp = int(_count_below(gen_test, best[k]))
        tn = len(imp_test) - int(_count_below(imp_test, best[k]))
        accuracy[k] = (tp + tn) / len(test)

        if len(imp_train) == 0:
            val_at[k] = val[k] = far[k] = float("nan")
        else:
            far_train = _count_below(imp_train, val_grid) / len(imp_train)
            if far_train.max() < far_target:
                val_at[k] = 0.0
            elif far_target < far_train.min():
                raise ValueError(f"val_thresholds: the grid's smallest training FAR in fold {k} is "
                                 f"{far_train.min():g}, above far_target {far_target:g}; start the grid at 0")
            else:
                val_at[k] = _slinear(far_train, val_grid, far_target)
            val[k] = _rate(int(_count_below(gen_test, val_at[k])), len(gen_test))
            far[k] = _rate(int(_count_below(imp_test, val_at[k])), len(imp_test))
        if np.isnan(val[k]) or np.isnan(far[k]):
            warnings.warn(f"verify_pairs: fold {k} lacks genuine or impostor pairs in its training or test "
                          f"set, so its VAL or FAR is undefined (NaN)", stacklevel=2)

    scores = torch.from_numpy(np.einsum("ij,ij->i", a, b))
    labels = torch.from_numpy(same)
    targets = np.atleast_1d(np.asarray(fars, dtype=np.float64)).tolist()
    tars = metrics.tar_at_far(scores, labels, targets, convention=_TAR_CONVENTION).tolist()
    return VerificationResult(
        accuracy=float(np.mean(accuracy)), accuracy_std=float(np.std(accuracy)),
        fold_accuracies=torch.from_numpy(accuracy), thresholds=torch.from_numpy(best),
        val=float(np.mean(val)), val_std=float(np.std(val)), far=float(np.mean(far)),
        fold_val=torch.from_numpy(val), fold_far=torch.from_numpy(far),
        fold_val_thresholds=torch.from_numpy(val_at),
        far_target=float(far_target), auc=metrics.auc(scores, labels), eer=metrics.eer(scores, labels),
        tar_at_far=dict(zip(targets, tars)), tar_convention=_TAR_CONVENTION, pairs=pairs, genuine=genuine)
