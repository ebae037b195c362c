"""From a state_dict in pyfacex's iResNet naming to the architecture it fits, checked against ``--arch``.

The depth (blocks per stage) and squeeze-excitation must be those of the chosen factory name; the
sizes the weights themselves fix (stage widths, embedding size, input channels, the input side that
sizes ``fc``) are read from the tensors and become the model file's ``kwargs`` where they differ
from the factory's defaults, so tiny test networks and 224×224 models convert as well.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn

from ..backbones.iresnet import IRESNET_LAYERS
from ..models._backbone import BACKBONES
from ..train.checkpoint import build_model, load_state_dict_checked

__all__ = ["ARCHITECTURES", "Layout", "infer_layout", "check_architecture", "model_kwargs", "build_loaded"]

#: --arch name → (blocks per stage, squeeze-excitation)
ARCHITECTURES: dict[str, tuple[tuple[int, int, int, int], bool]] = {
    name: (IRESNET_LAYERS[50] if name == "irse50" else IRESNET_LAYERS[int(name.removeprefix("iresnet"))],
           name == "irse50")
    for name in BACKBONES
}
_DEFAULTS = {"widths": (64, 128, 256, 512), "num_features": 512, "input_size": 112, "in_channels": 3,
             "variant": "arcface"}
_BLOCK_KEY = re.compile(r"layer([1-4])\.(\d+)\.")


@dataclass(frozen=True)
class Layout:
    """The iResNet a state_dict describes.

    Attributes:
        layers: blocks in each of the 4 stages; widths: their channels.
        in_channels: image channels of the stem; num_features: embedding size.
        input_size: the side H = W of the faces (``fc`` takes widths[3]·⌈H/16⌉² inputs).
        se: squeeze-excitation in the blocks (IR-SE).
    """

    layers: tuple[int, int, int, int]
    widths: tuple[int, int, int, int]
    in_channels: int
    num_features: int
    input_size: int
    se: bool


def _tensor(state: dict, key: str, what: str) -> torch.Tensor:
    value = state.get(key)
    if not isinstance(value, torch.Tensor):
        found = "" if value is None else f" (it is a {type(value).__name__})"
        raise ValueError(f"{what} has no {key!r} tensor{found}")
    return value


def infer_layout(state: dict, what: str, input_size: int | None = None) -> Layout:
    """The :class:`Layout` of ``state`` (pyfacex iResNet keys). ``input_size``: the face side when the
    source states it (an ONNX input shape), else 16·⌈H/16⌉ from ``fc``'s input size. ``what`` names
    the source in errors (a missing stage, non-contiguous blocks, an ``fc`` that fits no square map).
    """
    blocks: dict[int, set[int]] = {stage: set() for stage in range(1, 5)}
    for key in state:
        match = _BLOCK_KEY.match(key) if isinstance(key, str) else None
        if match:
            blocks[int(match[1])].add(int(match[2]))
    for stage, indices in blocks.items():
        if not indices:
            raise ValueError(f"{what} has no layer{stage} blocks: not an iResNet with 4 stages")
        if indices != set(range(len(indices))):
            missing = sorted(set(range(max(indices) + 1)) - indices)
            raise ValueError(f"{what}: layer{stage} has blocks {sorted(indices)} but not {missing}")
    layers = tuple(len(blocks[stage]) for stage in range(1, 5))
    widths = tuple(int(_tensor(state, f"layer{s}.0.conv1.weight", what).shape[0]) for s in range(1, 5))
    stem = _tensor(state, "conv1.weight", what)
    fc = _tensor(state, "fc.weight", what)
    if fc.dim() != 2:
        raise ValueError(f"{what}: fc.weight must be 2-D (num_features, C·h·w), got shape {tuple(fc.shape)}")
    cells, remainder = divmod(int(fc.shape[1]), widths[3])
    side = math.isqrt(cells)
    if remainder or side * side != cells:
        raise ValueError(f"{what}: fc takes {fc.shape[1]} inputs, not {widths[3]} channels × a square map")
    if input_size is None:
        input_size = 16 * side
    elif -(-input_size // 16) != side:
        raise ValueError(f"{what}: its input is {input_size}×{input_size} but fc takes a {side}×{side} map "
                         f"(faces of {16 * side - 15} to {16 * side} pixels)")
    se = any(isinstance(k, str) and ".se." in k for k in state)
    return Layout(layers, widths, int(stem.shape[1]), int(fc.shape[0]), int(input_size), se)


def _architecture_of(layers: tuple[int, ...], se: bool) -> str:
    names = [name for name, spec in ARCHITECTURES.items() if spec == (layers, se)]
    return f"that is {names[0]}" if names else "no pyfacex architecture name has it"


def check_architecture(layout: Layout, arch: str, what: str) -> None:
    """Raise ValueError unless ``arch`` (a name of :data:`ARCHITECTURES`) has ``layout``'s blocks per
    stage and squeeze-excitation; the error says which name the source has instead."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"--arch must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
    layers, se = ARCHITECTURES[arch]
    if layout.se != se:
        has, arch_has = ("has", "has none") if layout.se else ("has no", "has")
        raise ValueError(f"{what} {has} squeeze-excitation (IR-SE) blocks but --arch {arch} {arch_has} "
                         f"({_architecture_of(layout.layers, layout.se)})")
    if layout.layers != layers:
        raise ValueError(f"{what} has {layout.layers} blocks per stage ({_architecture_of(layout.layers, layout.se)}), "
                         f"--arch {arch} has {layers}")


def model_kwargs(layout: Layout, variant: str = "arcface") -> dict:
    """The factory keyword arguments that rebuild ``layout`` (those that differ from the defaults),
    as plain data for the model file."""
    values = {"widths": layout.widths, "num_features": layout.num_features, "input_size": layout.input_size,
              "in_channels": layout.in_channels, "variant": variant}
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in values.items() if value != _DEFAULTS[key]}


def build_loaded(arch: str, kwargs: dict, state: dict, what: str) -> nn.Module:
    """``build_model(arch, kwargs)`` with ``state`` loaded strictly (missing ``num_batches_tracked``
    counters, absent from old checkpoints, count 0), in eval mode. A mismatch names the missing,
    unexpected and differently shaped keys and ``what``."""
    model = build_model(arch, kwargs)
    state = dict(state)
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    load_state_dict_checked(model, state, what)
    return model.eval()
