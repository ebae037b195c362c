"""The Face Aggregation Network's generator and discriminator (Face Aggregation Network Sec. 3.1).

:class:`FaceAggregator` is the permutation-invariant U-Net: every member of a set runs through the
same weights, and global concatenation (eq. 4, :func:`pyfacex.ops.global_concat`) lets each member
see the element-wise max over its set at every depth. A max over the set (:func:`pyfacex.ops.set_max`)
then merges the branches into one image per set: eq. 1, {I_1, ..., I_N} -> A, for any N >= 1.

:class:`Discriminator` judges whether a face is real or aggregated (Sec. 3.1.2).

Sets are ragged, packed along dim 0 with ``offsets`` (b+1,) as every pyfacex set op takes them.
Channel widths and kernel sizes the paper leaves open follow docs/readings.md "Face Aggregation Network",
"Layout and widths of the aggregator"; they are arguments.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..ops import global_concat, set_max
from ..ops._checks import FLOAT_DTYPES, check_offsets, check_tensor

__all__ = ["FaceAggregator", "Discriminator"]


def _conv_elu(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2),
                         nn.ELU())


def _check_widths(widths: Sequence[int], count: int, name: str) -> tuple[int, ...]:
    widths = tuple(widths)
    if len(widths) != count or not all(isinstance(w, int) and w > 0 for w in widths):
        raise ValueError(f"{name} must be {count} positive ints, got {widths}")
    return widths


class _EncoderBlock(nn.Module):
    """Global concat -> 1x1 conv (merge member and set features back to C) -> 3x3 conv, stride 2."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.merge = _conv_elu(2 * in_channels, in_channels, 1)
        self.down = _conv_elu(in_channels, out_channels, 3, stride=2)

    def forward(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.down(self.merge(global_concat(x, offsets)))


class _DecoderBlock(nn.Module):
    """4x4 deconv (x2) -> global concat -> concat the encoder map of that size -> 1x1 conv -> 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1), nn.ELU())
        self.merge = _conv_elu(3 * out_channels, out_channels, 1)  # member ⊕ set max ⊕ skip
        self.refine = _conv_elu(out_channels, out_channels, 3)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        x = global_concat(self.up(x), offsets)
        return self.refine(self.merge(torch.cat([x, skip], dim=1)))


class FaceAggregator(nn.Module):
    """Permutation-invariant U-Net aggregating each set of faces into one face (Sec. 3.1.1, eq. 1, 4).

    Layout (docs/readings.md "Face Aggregation Network"): a 3x3 conv (width ``widths[0]``); 4 encoder
    blocks (global concat, 1x1 conv, 3x3 conv stride 2) to ``widths[1..4]`` at H/2 ... H/16 (112 -> 7);
    4 decoder blocks (4x4 deconv, global concat, concat with the encoder map of that resolution, 1x1
    conv, 3x3 conv) back to ``widths[3..0]`` at H; the max over each set; two 3x3 convs to
    ``out_channels``. ELU after every conv and deconv but the last, so the output is an unbounded image
    in the input's normalisation.

    Args:
        widths: 5 channel widths (stem, then each encoder block's output); decoder widths mirror them.
        in_channels, out_channels: image channels (3).

    Input: ``images`` (N, in_channels, H, W) with H and W multiples of 16 (112 in the paper), b sets
    packed along dim 0 with ``offsets`` (b+1,) int64, every set non-empty.
    Output: (b, out_channels, H, W), one image per set, invariant to the order of each set's members.
    """

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 256, 512), in_channels: int = 3, out_channels: int = 3):
        super().__init__()
        widths = _check_widths(widths, 5, "widths")
        self.in_channels = in_channels
        self.stem = _conv_elu(in_channels, widths[0], 3)
        self.encoder = nn.ModuleList(_EncoderBlock(widths[i], widths[i + 1]) for i in range(4))
        self.decoder = nn.ModuleList(_DecoderBlock(widths[i + 1], widths[i]) for i in reversed(range(4)))
        self.head = nn.Sequential(_conv_elu(widths[0], widths[0], 3),
                                  nn.Conv2d(widths[0], out_channels, 3, padding=1))

    def forward(self, images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        check_tensor(images, "images", dtypes=FLOAT_DTYPES, dim=4)
        if images.shape[1] != self.in_channels:
            raise ValueError(f"images must have {self.in_channels} channels, got shape {tuple(images.shape)}")
        if images.shape[2] % 16 or images.shape[3] % 16:
            raise ValueError(f"images' height and width must be multiples of 16 (4 stride-2 stages), "
                             f"got shape {tuple(images.shape)}")
        check_offsets(offsets, images, allow_empty_sets=False)
        skips = [self.stem(images)]
        for block in self.encoder:
            skips.append(block(skips[-1], offsets))
        x = skips.pop()
        for block in self.decoder:
            x = block(x, skips.pop(), offsets)
        return self.head(set_max(x, offsets))


class Discriminator(nn.Module):
    """Real-or-aggregated face classifier (Sec. 3.1.2); returns logits, D(x) = sigmoid(logit).

    Four 3x3 convs with leaky ReLU, the first two with stride 2 (112 -> 28), then one fully connected
    unit over every pixel of the last map, so that the decision can weigh the face centre more than
    the background. Kernel sizes and widths are not in the paper (docs/readings.md "Face Aggregation
    Network", "Discriminator"): arguments here.

    Args:
        widths: 4 conv widths.
        input_size: image side (multiple of 4), fixes the FC layer's size ((input_size/4)^2 pixels).
        in_channels: image channels; negative_slope: of the leaky ReLU.

    Input: (b, in_channels, input_size, input_size). Output: (b,) logits.
    """

    def __init__(self, widths: Sequence[int] = (64, 128, 256, 256), input_size: int = 112, in_channels: int = 3,
                 negative_slope: float = 0.2):
        super().__init__()
        widths = _check_widths(widths, 4, "widths")
        if input_size <= 0 or input_size % 4:
            raise ValueError(f"input_size must be a positive multiple of 4, got {input_size}")
        self.input_shape = (in_channels, input_size, input_size)
        layers, channels = [], in_channels
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(channels, width, 3, stride=2 if i < 2 else 1, padding=1),
                       nn.LeakyReLU(negative_slope)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels * (input_size // 4) ** 2, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_tensor(images, "images", dtypes=FLOAT_DTYPES, dim=4)
        if tuple(images.shape[1:]) != self.input_shape:
            raise ValueError(f"images must have shape (b, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(images.shape)}")
        return self.fc(self.features(images).flatten(1)).squeeze(1)
