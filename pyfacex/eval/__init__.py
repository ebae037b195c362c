"""Evaluation protocols: verification, IJB templates 1:1 and 1:N, identification, video, reports."""
from .metrics import CONVENTIONS, ROC, auc, eer, roc, tar_at_far

__all__ = ["CONVENTIONS", "ROC", "auc", "eer", "roc", "tar_at_far"]
