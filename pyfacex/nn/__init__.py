"""Layers and heads of pyfacex (``torch.nn.Module`` s over :mod:`pyfacex.ops`)."""
from .lit import LocalInformationTransfer
from .margin_heads import AdaFaceHead, ArcFace, CombinedMarginHead, CosFace, SphereFace
from .norm_stats import NormStats
from .partial_fc import PartialFC

__all__ = ["AdaFaceHead", "ArcFace", "CombinedMarginHead", "CosFace", "LocalInformationTransfer", "NormStats",
           "PartialFC", "SphereFace"]
