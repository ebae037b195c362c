"""Layers and heads of pyfacex (``torch.nn.Module`` s over :mod:`pyfacex.ops`)."""
from .attentional_fusion import IterativeAttentionalFusion, MultiScaleChannelAttention
from .heads import HeadParameterError, create_head, head_parameters, list_heads, register_head
from .heatmap_head import HeatmapHead
from .integration import FeatureAlign, IntegrationLayer, StageIntegration
from .lit import LocalInformationTransfer
from .margin_heads import AdaFaceHead, ArcFace, CombinedMarginHead, CosFace, SoftmaxHead, SphereFace
from .norm_stats import NormStats
from .partial_fc import PartialFC

__all__ = ["AdaFaceHead", "ArcFace", "CombinedMarginHead", "CosFace", "FeatureAlign", "HeadParameterError",
           "HeatmapHead", "IntegrationLayer", "IterativeAttentionalFusion", "LocalInformationTransfer",
           "MultiScaleChannelAttention", "NormStats", "PartialFC", "SoftmaxHead", "SphereFace", "StageIntegration",
           "create_head", "head_parameters", "list_heads", "register_head"]
