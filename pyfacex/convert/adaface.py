"""AdaFace's IR (mk-minchul/AdaFace ``net.py``) in pyfacex's iResNet naming.

AdaFace's ``Backbone`` (IR-18/34/50/101, IR-SE-50) is, module for module, pyfacex's iResNet with
``variant="adaface"`` (see :mod:`pyfacex.backbones.iresnet`):

================================  ====================================
AdaFace                           pyfacex
================================  ====================================
``input_layer.0`` conv, ``.1`` BN, ``.2`` PReLU   ``conv1``, ``bn1``, ``prelu``
``body.N`` (N counts blocks across stages)        ``layer<s>.<i>``
``res_layer.0 … .5``                              ``bn1, conv1, bn2, prelu, conv2, bn3``
``res_layer.se_block.fc1/fc2`` (IR-SE)            ``se.fc1/fc2``
``shortcut_layer.0/.1`` (conv + BN)               ``downsample.0/.1``
``shortcut_layer`` MaxPool2d(1, stride)           no module (``variant="adaface"``)
``output_layer.0`` BN2d, ``.3`` Linear            ``bn2``, ``fc``
``output_layer.4`` BatchNorm1d(affine=False)      ``features`` (``variant="adaface"``)
================================  ====================================

``output_layer.1`` (Dropout) and ``.2`` (Flatten) hold nothing. The stages start at ``body.0`` and at
every block with a conv shortcut (the blocks that widen). AdaFace's forward returns the embedding
divided by its norm, and the norm; pyfacex's returns the embedding itself (their product).

AdaFace feeds its networks BGR images ((x/255 − 0.5)/0.5 of the channels reversed, ``inference.py``
``to_input``); every pyfacex consumer feeds RGB. :func:`reverse_stem_channels` reverses the stem
convolution's input channels, which makes the converted network on RGB images compute exactly what
AdaFace's computes on the same images in BGR, without any consumer knowing about channel orders.
"""
from __future__ import annotations

import re

import torch

__all__ = ["CHANNEL_ORDER", "adaface_to_pyfacex", "reverse_stem_channels"]

#: the channel order AdaFace's networks read
CHANNEL_ORDER = "BGR"

_STEM = {"input_layer.0": "conv1", "input_layer.1": "bn1", "input_layer.2": "prelu",
         "output_layer.0": "bn2", "output_layer.3": "fc", "output_layer.4": "features"}
_RESIDUAL = {"0": "bn1", "1": "conv1", "2": "bn2", "3": "prelu", "4": "conv2", "5": "bn3", "se_block": "se"}
_SHORTCUT = {"0": "downsample.0", "1": "downsample.1"}
_BLOCK = re.compile(r"body\.(\d+)\.(res_layer|shortcut_layer)\.([A-Za-z_0-9]+)\.(.+)")
_OUTER = re.compile(r"((?:input|output)_layer\.\d+)\.(.+)")


def _stage_starts(state: dict, blocks: list[int], what: str) -> list[int]:
    """body.0 and every block with a conv shortcut: the first block of each of the 4 stages."""
    starts = [0] + [n for n in blocks[1:] if f"body.{n}.shortcut_layer.0.weight" in state]
    if len(starts) != 4:
        raise ValueError(f"{what}: an AdaFace IR has 4 stages (a widening conv shortcut opening stages 2-4), "
                         f"its body has {len(starts)} (stages open at blocks {starts})")
    return starts


def adaface_to_pyfacex(state: dict, what: str) -> dict[str, torch.Tensor]:
    """AdaFace ``Backbone`` entries (the ``model.`` prefix removed) → pyfacex iResNet entries.

    Raises ValueError naming ``what`` for what AdaFace's IR does not hold: keys outside the table
    of the module docstring, a body whose blocks are not numbered 0..n-1, the bottleneck IRs
    (``ir_152``, ``ir_200``: 1×1 convs in the residual branch), not 4 stages.
    """
    blocks = sorted({int(m[1]) for key in state if isinstance(key, str) and (m := _BLOCK.match(key))})
    if not blocks or blocks != list(range(len(blocks))):
        raise ValueError(f"{what}: AdaFace's body blocks must be body.0 … body.<n-1>, found {blocks[:8]}")
    first_conv = state.get("body.0.res_layer.1.weight")
    if isinstance(first_conv, torch.Tensor) and tuple(first_conv.shape[2:]) == (1, 1):
        raise ValueError(f"{what} is a bottleneck IR (AdaFace's ir_152 / ir_200: 1×1 convs in res_layer), "
                         f"which is not an iResNet")
    starts = _stage_starts(state, blocks, what)
    place = {}
    for n in blocks:
        stage = max(s for s, start in enumerate(starts) if start <= n)
        place[n] = f"layer{stage + 1}.{n - starts[stage]}"
    converted, unknown = {}, []
    for key, value in state.items():
        name = None
        if match := _BLOCK.match(key):
            table = _RESIDUAL if match[2] == "res_layer" else _SHORTCUT
            if match[3] in table:
                name = f"{place[int(match[1])]}.{table[match[3]]}.{match[4]}"
        elif (match := _OUTER.match(key)) and match[1] in _STEM:
            name = f"{_STEM[match[1]]}.{match[2]}"
        if name is None:
            unknown.append(key)
        else:
            converted[name] = value
    if unknown:
        shown = ", ".join(map(repr, unknown[:5])) + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
        raise ValueError(f"{what}: {len(unknown)} entries are not part of AdaFace's IR: {shown}")
    return converted


def reverse_stem_channels(state: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """``state`` with ``conv1.weight``'s input channels reversed (BGR ↔ RGB): the network then reads
    the other channel order. Only the 3-channel stem can be reversed; the error names ``what``."""
    weight = state.get("conv1.weight")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4 or weight.shape[1] != 3:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else None
        raise ValueError(f"{what}: the stem conv must read 3 channels (BGR) to be turned to RGB, its weight "
                         f"has shape {shape}")
    return {**state, "conv1.weight": weight.flip(1)}
