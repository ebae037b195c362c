"""The network an exported file holds: a model file's embedder, in a form every exporter can trace.

:func:`exportable_embedder` starts from :func:`pyfacex.train.checkpoint.embedder_for` (iResNet, LGAF,
FAN-Face, the QAFace/VPL backbone, the Face Aggregation Network's extractor) and changes three things:

* LFENet embeds every image as a set of one (as ``pyfacex eval`` does). Its Local Information
  Transfer then attends among the h·w local features of each image alone, which
  :class:`SingleImageLFENet` computes as batched per-image attention. The set ops would pack the
  batch into one ragged token sequence whose masked reference builds (B·h·w)² scores, and whose
  native path reads the offsets' values (a data-dependent shape no exporter can follow).
* Autocast (iResNet's ``fp16``) is switched off: an exported graph computes in float32, the dtype
  of its input, so it runs the same on every runtime.
* A model that takes BGR faces (AdaFace's convention) gets the channel swap as its first step:
  every exported file takes RGB, as insightface's ``ArcFaceONNX`` feeds it.

The ops themselves run on the ``reference`` backend while tracing (:func:`reference_ops`): pure
torch, so the exported graph holds only ATen operators and needs neither pyfacex nor its native
extension to run.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..ops import use_backend

__all__ = ["CHANNEL_ORDERS", "SingleImageLFENet", "RGBInput", "exportable_embedder", "reference_ops"]

CHANNEL_ORDERS = ("RGB", "BGR")


class SingleImageLFENet(nn.Module):
    """LFENet's embedding of each image as a set of one (LFENet eq. 1-5 with T = 1).

    backbone C(x) → LIT among the h·w positions of each image → the backbone's BN-Dropout-FC-BN
    head. With a single image per set the θ segmentation never splits anything, so the result is
    ``model.embed(images, arange(B + 1))`` whether θ is set or not.

    Shapes: images (B, 3, H, W) in [-1, 1] → (B, E).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.backbone = model.backbone
        self.lit = model.lit

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feature_map = self.backbone(images, return_feature_map=True)
        return self.backbone.head(feature_map + self._moved(feature_map))

    def _moved(self, x: torch.Tensor) -> torch.Tensor:
        """A·v of eq. 5 within each image: (B, d, h, w) → (B, d, h, w)."""
        lit = self.lit
        batch, dim, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, h·w, d), the positions of one image per row
        v = lit.value(tokens)
        if lit.relation == "softmax_a":  # eq. 2: relations of the raw local features
            moved = torch.softmax(lit.scale * (tokens @ tokens.transpose(1, 2)), dim=2) @ v
        else:
            q, k = lit.query(tokens), lit.key(tokens)
            if lit.relation == "softmax_b":  # eq. 3
                moved = torch.softmax(lit.scale * (q @ k.transpose(1, 2)), dim=2) @ v
            else:  # eq. 4, scaled_dot: (q kᵀ / N)·v as q·(kᵀ v)/N, N = h·w positions
                moved = q @ (k.transpose(1, 2) @ v) / (height * width)
        return moved.transpose(1, 2).reshape(batch, dim, height, width)


class RGBInput(nn.Module):
    """A BGR embedder fed RGB faces: swaps the channels, then runs it. (B, 3, H, W) → its output."""

    def __init__(self, embedder: nn.Module):
        super().__init__()
        self.embedder = embedder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embedder(images.flip(1))


def exportable_embedder(model: nn.Module, channel_order: str = "RGB") -> nn.Module:
    """The embedder of ``model`` (a module a model file builds) ready to trace: eval mode, no
    gradients, float32 (autocast off), LFENet as :class:`SingleImageLFENet`, taking RGB faces
    (``channel_order``: the order ``model`` takes, "RGB" or "BGR").

    Changes ``model`` in place (``fp16`` switched off): pass a freshly loaded model.
    Raises ValueError for a model without a face embedding (a FAN landmark network).
    """
    from ..models.lfenet import LFENet
    from ..train.checkpoint import embedder_for

    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    for module in model.modules():
        if getattr(module, "fp16", False) is True:
            module.fp16 = False
    embedder = SingleImageLFENet(model) if isinstance(model, LFENet) else embedder_for(model)
    if channel_order == "BGR":
        embedder = RGBInput(embedder)
    embedder.eval()
    embedder.requires_grad_(False)
    return embedder


@contextlib.contextmanager
def reference_ops() -> Iterator[None]:
    """Trace inside this block: pyfacex's ops run their pure-torch reference (their ATen composition)."""
    with use_backend("reference"), torch.no_grad():
        yield
