"""Layers and heads of pyfacex (``torch.nn.Module`` s over :mod:`pyfacex.ops`)."""
from .norm_stats import NormStats

__all__ = ["NormStats"]
