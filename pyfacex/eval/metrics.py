"""Score-level metrics: ROC, AUC, EER and TAR at given FARs.

Scores are similarities (higher = more likely the same identity); ``is_genuine`` marks mated pairs.
A threshold t accepts the pairs with score >= t:

    FAR(t) = #impostors with score >= t / #impostors,   TAR(t) = #genuine with score >= t / #genuine

TAR@FAR comes in three conventions, and every table says which one it shows:

- ``"interpolated"``: linear interpolation of the ROC between its operating points (a randomised
  mix of the two neighbouring thresholds); the usual curve-based figure.
- ``"nearest"``: insightface's IJB convention: the ROC point (of sklearn's ``roc_curve`` with its
  default ``drop_intermediate=True``) whose FAR is nearest to the target, even when that FAR
  exceeds the target; insightface flips the curve first ("select largest tpr at same fpr"), so of
  equally near points the one with the highest TAR wins.
- ``"at_most"``: the best TAR of a threshold whose FAR does not exceed the target (no interpolation);
  the conservative figure.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ROC", "roc", "auc", "eer", "tar_at_far", "roc_tar_at_far", "CONVENTIONS"]

CONVENTIONS = ("interpolated", "nearest", "at_most")


@dataclass
class ROC:
    """Operating points of a score threshold, in order of decreasing threshold.

    far, tar: (K,) float64, non-decreasing from (0, 0) to (1, 1); thresholds: (K,) float64, the first +inf;
    genuine, impostors: how many pairs of each kind the rates count.
    """

    far: torch.Tensor
    tar: torch.Tensor
    thresholds: torch.Tensor
    genuine: int
    impostors: int


def _scores_and_labels(scores, is_genuine) -> tuple[torch.Tensor, torch.Tensor]:
    scores = torch.as_tensor(scores).detach().to("cpu", torch.float64).reshape(-1)
    labels = torch.as_tensor(is_genuine).detach().to("cpu").reshape(-1)
    if labels.dtype != torch.bool:
        if not bool(((labels == 0) | (labels == 1)).all()):
            raise ValueError("is_genuine: expected booleans (or 0/1)")
        labels = labels.bool()
    if scores.numel() != labels.numel():
        raise ValueError(f"is_genuine: expected one label per score ({scores.numel()}), got {labels.numel()}")
    if not bool(torch.isfinite(scores).all()):
        bad = int((~torch.isfinite(scores)).nonzero()[0])
        raise ValueError(f"scores: expected finite values, score {bad} is {scores[bad].item()}")
    genuine = int(labels.sum())
    if genuine == 0 or genuine == labels.numel():
        raise ValueError(f"is_genuine: a ROC needs genuine and impostor pairs, got {genuine} genuine of "
                         f"{labels.numel()}")
    return scores, labels


def roc(scores, is_genuine, drop_intermediate: bool = False) -> ROC:
    """The ROC of similarity scores.

    Args:
        scores: (N,) similarities; is_genuine: (N,) bool (or 0/1).
        drop_intermediate: drop the points that lie on a straight segment between their neighbours,
            as sklearn's ``roc_curve`` does by default (insightface's IJB code relies on it).
    Returns:
        :class:`ROC` with one point per distinct score plus the (0, 0) point at threshold +inf.
    """
    scores, labels = _scores_and_labels(scores, is_genuine)
    order = torch.argsort(scores, descending=True, stable=True)
    ordered, hits = scores[order], labels[order].to(torch.float64)
    last_of_value = torch.cat([(ordered[1:] != ordered[:-1]).nonzero().flatten(), torch.tensor([len(ordered) - 1])])
    tps = hits.cumsum(0)[last_of_value]
    fps = (last_of_value + 1).to(torch.float64) - tps
    zero = torch.zeros(1, dtype=torch.float64)
    curve = ROC(torch.cat([zero, fps / fps[-1]]), torch.cat([zero, tps / tps[-1]]),
                torch.cat([torch.tensor([float("inf")], dtype=torch.float64), ordered[last_of_value]]),
                int(tps[-1]), int(fps[-1]))
    return _drop_intermediate(curve) if drop_intermediate else curve


def _drop_intermediate(curve: ROC) -> ROC:
    """sklearn's ``drop_intermediate``: of the points after (0, 0), keep the ends and those where the
    curve bends (a non-zero second difference of the integer counts)."""
    fps = (curve.far[1:] * curve.impostors).round()
    tps = (curve.tar[1:] * curve.genuine).round()
    if len(fps) <= 2:
        return curve
    bends = (fps.diff(n=2) != 0) | (tps.diff(n=2) != 0)
    keep = torch.cat([torch.tensor([True, True]), bends, torch.tensor([True])])   # (0, 0), first, ..., last
    return ROC(curve.far[keep], curve.tar[keep], curve.thresholds[keep], curve.genuine, curve.impostors)


def auc(scores, is_genuine) -> float:
    """Area under the ROC (trapezoids; ties count half, as the Mann-Whitney statistic)."""
    curve = roc(scores, is_genuine)
    return float(torch.trapezoid(curve.tar, curve.far))


def eer(scores, is_genuine) -> float:
    """Equal error rate: FAR = 1 − TAR on the ROC, linearly interpolated between operating points."""
    curve = roc(scores, is_genuine)
    gap = curve.far - (1 - curve.tar)                 # rises from −1 to +1 along the curve
    k = int((gap >= 0).nonzero()[0])
    if k == 0 or gap[k] == 0:
        return float(curve.far[k])
    t = gap[k - 1] / (gap[k - 1] - gap[k])           # where the segment crosses zero
    return float(curve.far[k - 1] + t * (curve.far[k] - curve.far[k - 1]))


def tar_at_far(scores, is_genuine, fars, convention: str = "interpolated") -> torch.Tensor:
    """TAR at each target FAR.

    Args:
        scores: (N,) similarities; is_genuine: (N,) bool.
        fars: target FARs in [0, 1] (a number or a sequence).
        convention: "interpolated", "nearest" (insightface) or "at_most" (see the module docstring).
    Returns:
        (len(fars),) float64 TARs.
    """
    return roc_tar_at_far(roc(scores, is_genuine), fars, convention)


def roc_tar_at_far(curve: ROC, fars, convention: str = "interpolated") -> torch.Tensor:
    """:func:`tar_at_far` on a ROC already computed by :func:`roc`, so that several conventions or
    FAR lists on millions of scores sort them once. ("interpolated" and "at_most" need the curve
    without ``drop_intermediate``; dropping is idempotent, so "nearest" takes either.)"""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention: expected one of {', '.join(CONVENTIONS)}, got {convention!r}")
    targets = torch.as_tensor(fars, dtype=torch.float64).reshape(-1)
    if not bool(((targets >= 0) & (targets <= 1)).all()):
        raise ValueError(f"fars: expected values in [0, 1], got {targets.tolist()}")
    if convention == "nearest":
        dropped = _drop_intermediate(curve)
        far, tar = dropped.far.flip(0), dropped.tar.flip(0)  # insightface's np.flipud, then the first minimum
        return tar[(far.unsqueeze(0) - targets.unsqueeze(1)).abs().argmin(1)]
    if convention == "at_most":
        allowed = curve.far.unsqueeze(0) <= targets.unsqueeze(1)        # the (0, 0) point always is
        return torch.where(allowed, curve.tar.unsqueeze(0), torch.zeros(1, dtype=torch.float64)).amax(1)
    # Interpolated: along the polyline; where several points share the target FAR, the highest TAR.
    right = torch.searchsorted(curve.far, targets, right=True).clamp(max=len(curve.far) - 1)
    left = torch.searchsorted(curve.far, targets, right=False).clamp(min=1) - 1
    exact = curve.far[right - 1] == targets
    span = (curve.far[right] - curve.far[left]).clamp(min=1e-300)
    t = ((targets - curve.far[left]) / span).clamp(0, 1)
    between = curve.tar[left] + t * (curve.tar[right] - curve.tar[left])
    return torch.where(exact, curve.tar[right - 1], between)
