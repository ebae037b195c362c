"""Shortcut floors: what a protocol's pairs give away to embedders that know nothing about faces.

A face world in which identities differ mostly in skin and hair colour or head outline lets an
embedder score well without looking at eyes, brows, nose, mouth or marks; a method built on local
detail then has little to add over a baseline. Two floors measure that on any protocol
:func:`~pyfacex.eval.evaluate_protocol` runs:

- :func:`mean_colour_embedder`: the image average-pooled to a small grid of RGB cells, nothing else;
- :func:`untrained_network`: a randomly initialised (never trained) iResNet, which sees colour and
  coarse layout through random filters.

:func:`shortcut_floors` runs both on a list of protocol specs. A world whose floors sit far below
its trained baseline rewards what a face recognition model learns rather than what colour gives.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.iresnet import IResNet
from ..data._args import check_int
from .protocols import ProtocolResult, evaluate_protocol

__all__ = ["MEAN_COLOUR", "UNTRAINED", "MeanColour", "mean_colour_embedder", "untrained_network", "shortcut_floors"]

MEAN_COLOUR = "mean colour"
"""Row name of the mean-colour floor in :func:`shortcut_floors`' result."""
UNTRAINED = "untrained network"
"""Row name of the untrained-network floor in :func:`shortcut_floors`' result."""


class MeanColour(nn.Module):
    """An image embedder that keeps only mean colours: average pooling to ``grid`` × ``grid`` RGB
    cells, flattened. The cells stay in the embedder convention's [-1, 1] range, centred on
    mid-grey, so the cosine score of two images compares their colours as offsets from grey.

    Shapes: (B, 3, H, W) float in [-1, 1] -> (B, 3 · grid²) float32.
    """

    def __init__(self, grid: int = 4):
        super().__init__()
        self.grid = check_int("grid", grid, 1)

    def extra_repr(self) -> str:
        return f"grid={self.grid}"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected (B, 3, H, W), got {tuple(images.shape)}")
        return F.adaptive_avg_pool2d(images.float(), self.grid).flatten(1)


def mean_colour_embedder(grid: int = 4) -> MeanColour:
    """The mean-colour floor's embedder (:class:`MeanColour`): 4 × 4 RGB cells by default."""
    return MeanColour(grid)


def untrained_network(seed: int = 0, layers: Sequence[int] = (1, 1, 1, 1),
                      widths: Sequence[int] = (16, 32, 64, 128), embedding_size: int = 128,
                      image_size: int = 64) -> IResNet:
    """A randomly initialised iResNet (PyTorch's default initialisation drawn from ``seed``), in eval
    mode with its batch norms at their initial statistics: the untrained-network floor.

    The defaults are the demo's tiny backbone (one block per stage, widths 16-128, 128-d embedding,
    64-pixel faces). The global random state is left as it was.

    Shapes: (B, 3, image_size, image_size) in [-1, 1] -> (B, embedding_size).
    """
    seed = check_int("seed", seed, 0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = IResNet(layers=layers, widths=widths, num_features=embedding_size, input_size=image_size)
    return network.eval()


def shortcut_floors(protocol_specs: Sequence[str | os.PathLike], image_size: int = 64, *, grid: int = 4,
                    seed: int = 0, network: dict | None = None, batch_size: int = 64,
                    progress: bool = False) -> dict[str, list[ProtocolResult]]:
    """Both shortcut floors on every protocol.

    Args:
        protocol_specs: :func:`~pyfacex.eval.evaluate_protocol` specs (``"lfw=/data/lfw"``, ...).
        image_size: the side every image is resized to (the models' input size).
        grid: cells per side of the mean-colour embedder.
        seed: the untrained network's initialisation seed.
        network: keyword arguments of :func:`untrained_network` besides ``seed`` and ``image_size``
            (``layers``, ``widths``, ``embedding_size``); None = the demo's tiny iResNet.
        batch_size, progress: as for :func:`~pyfacex.eval.evaluate_protocol` (which flips, as for
            any model).
    Returns:
        {:data:`MEAN_COLOUR`: [result per spec], :data:`UNTRAINED`: [result per spec]}: rows in the
        form :func:`~pyfacex.eval.summarize` takes; ``result.value`` is the headline metric.
    """
    if isinstance(protocol_specs, (str, os.PathLike)) or not isinstance(protocol_specs, Sequence):
        raise TypeError(f"protocol_specs: expected a list of protocol specs, got {protocol_specs!r}")
    image_size = check_int("image_size", image_size, 16)
    network = dict(network or {})
    clashes = {"seed", "image_size"} & set(network)
    if clashes:
        raise ValueError(f"network: {sorted(clashes)} are arguments of shortcut_floors itself, not of network")
    embedders = {MEAN_COLOUR: mean_colour_embedder(grid),
                 UNTRAINED: untrained_network(seed, image_size=image_size, **network)}
    return {name: [evaluate_protocol(spec, model, image_size=image_size, batch_size=batch_size, progress=progress)
                   for spec in protocol_specs]
            for name, model in embedders.items()}
