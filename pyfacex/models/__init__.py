"""The five systems as composable models, built by name from the registry.

>>> from pyfacex.models import create_model, list_models
>>> list_models("lgaf*")
['lgaf_r100', 'lgaf_r50']
"""
from .face_aggregation import FaceAggregation
from .fanface import FANFace
from .lfenet import LFENet
from .lgaf import LGAF
from .qaface import QAFace
from .registry import create_model, list_models, register_model

__all__ = ["FaceAggregation", "FANFace", "LFENet", "LGAF", "QAFace", "create_model", "list_models", "register_model"]
