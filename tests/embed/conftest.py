"""Fixtures of the embed tests: tiny model files and synthetic photos (fixtures.py)."""
import importlib.util
import sys
from pathlib import Path

_NAME = "pyfacex_embed_test_fixtures"
if _NAME not in sys.modules:
    _SPEC = importlib.util.spec_from_file_location(_NAME, Path(__file__).with_name("fixtures.py"))
    sys.modules[_NAME] = importlib.util.module_from_spec(_SPEC)
    _SPEC.loader.exec_module(sys.modules[_NAME])
_F = sys.modules[_NAME]

one_thread, model_112, model_32, photos, crops = _F.one_thread, _F.model_112, _F.model_32, _F.photos, _F.crops
