"""pyfacex: face-recognition kernels, models, training and evaluation for PyTorch."""
from . import nn, ops

__version__ = "0.1.0"
__all__ = ["nn", "ops", "__version__"]
