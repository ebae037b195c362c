"""pyfacex: face-recognition kernels, models, training and evaluation for PyTorch."""
from . import align, nn, ops

__version__ = "0.1.0"
__all__ = ["align", "nn", "ops", "FaceEmbedder", "__version__"]


def __getattr__(name: str):
    # FaceEmbedder brings the models, evaluation and image decoding with it: imported on first use,
    # so `import pyfacex.nn` stays as light as it was.
    if name == "FaceEmbedder":
        from .embed import FaceEmbedder

        return FaceEmbedder
    raise AttributeError(f"module 'pyfacex' has no attribute {name!r}")
