"""The weights people already have, as pyfacex models: ``pyfacex convert SRC --arch NAME --out MODEL.pt``.

Three sources, all iResNets (``--arch`` iresnet18, iresnet34, iresnet50, iresnet100, iresnet200, irse50):

- ``insightface``: arcface_torch backbone files (``backbone.pth`` / ``model.pt``, a bare state_dict;
  ``checkpoint_gpu_<rank>.pt`` with ``state_dict_backbone``; a ``module.`` prefix of
  DistributedDataParallel). The naming is pyfacex's own, so the tensors load as they are.
- ``onnx``: insightface ONNX recognition models, read by their graph structure
  (:mod:`pyfacex.convert.onnx_graph`) and checked against the original through onnxruntime
  (:func:`onnxruntime_agreement`, cosine ≥ :data:`CHECK_COSINE`). Needs ``pip install pyfacex[onnx]``.
- ``adaface``: AdaFace ``.ckpt`` files (PyTorch Lightning checkpoints of ``net.py``'s IR / IR-SE,
  under ``state_dict`` with the ``model.`` prefix; the margin head's ``head.*`` is left out),
  renamed to ``variant="adaface"`` iResNets (:mod:`pyfacex.convert.adaface`).

Every converted model reads what every pyfacex model reads: RGB faces (x/255 − 0.5)/0.5 of the
model file's ``image_size``. AdaFace's BGR input is absorbed by reversing the stem convolution's input
channels, an mxnet-era graph's own pixel normalisation by scaling the stem's weights; the model
file records both under ``converted_from`` (``channel_order`` there is the source's, the top-level
``channel_order`` the file's model reads: always ``"RGB"``).

The depth (blocks per stage) and IR-SE come from ``--arch`` and are checked against the weights; the
widths, embedding size and input side are read from the weights (``kwargs`` of the model file).

:func:`import_model` gives the model without writing a file (``pyfacex eval --arch NAME --weights
SRC``); :func:`convert` writes the model file atomically.
"""
from .api import SOURCES, ConversionReport, convert, detect_source, import_model
from .architecture import ARCHITECTURES
from .onnx_check import CHECK_COSINE, onnxruntime_agreement

__all__ = ["ARCHITECTURES", "CHECK_COSINE", "SOURCES", "ConversionReport", "convert", "detect_source",
           "import_model", "onnxruntime_agreement"]
