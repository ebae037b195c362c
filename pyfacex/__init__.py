"""pyfacex: face-recognition kernels, models, training and evaluation for PyTorch."""
from . import ops

__version__ = "0.1.0"
__all__ = ["ops", "__version__"]
