"""Imports every model module, so that their ``@register_model`` entry points are registered."""
from . import face_aggregation, fanface, lfenet, lgaf, qaface  # noqa: F401
