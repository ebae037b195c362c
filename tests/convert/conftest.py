"""Fixtures of the conversion tests: the peers' restated networks (peers.py) and files they write."""
import importlib.util
import sys
from pathlib import Path

import pytest

# peers.py is loaded under one fixed module name (the tests import nothing by path): objects it
# pickles into checkpoints must be found by that name when torch.save writes them.
_SPEC = importlib.util.spec_from_file_location("convert_peers", Path(__file__).with_name("peers.py"))
peers_module = importlib.util.module_from_spec(_SPEC)
sys.modules["convert_peers"] = peers_module
_SPEC.loader.exec_module(peers_module)


@pytest.fixture(scope="session")
def peers():
    """The module of restated peer networks and writers (tests/convert/peers.py)."""
    return peers_module
