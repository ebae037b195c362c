"""FAN, the stacked-hourglass landmark network, state_dict-compatible with face-alignment's 2DFAN4.

FAN-Face (Sec. 3.2-3.3) takes three things from a pre-trained FAN: the landmark heatmaps
H (stacked with the image, eq. 1), and the high-to-low and low-to-high features of one hourglass at
every resolution (the x_l of eq. 2). :class:`FAN` returns all of them from one forward pass, and
:func:`decode_landmarks` turns heatmaps into coordinates (argmax H_i, Sec. 3.2) as face-alignment does.

Module names, shapes and the forward follow face-alignment's ``face_alignment/models.py`` (``FAN``,
``HourGlass``, ``ConvBlock``), so its published 2DFAN4 checkpoint loads with ``strict=True``.
Input: RGB in [0, 1] (pixels / 255), 256×256 crops; output: 68 heatmaps of 64×64 per stack.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FAN", "FANOutput", "HourGlass", "ConvBlock", "decode_landmarks", "truncate_stacks"]

_POOLS = {"avg": F.avg_pool2d, "max": F.max_pool2d}


def _pool_fn(pool: str):
    if pool not in _POOLS:
        raise ValueError(f"pool must be one of {sorted(_POOLS)}, got {pool!r}")
    return _POOLS[pool]


def _conv3x3(in_planes: int, out_planes: int) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, padding=1, bias=False)


class ConvBlock(nn.Module):
    """FAN's hierarchical, parallel and multi-scale residual block (Bulat & Tzimiropoulos 2017a).

    Three pre-activated 3×3 convs in a chain (BN-ReLU-conv each) with out/2, out/4 and out/4
    channels; their outputs are concatenated to ``out_planes`` channels and added to the input,
    which goes through BN-ReLU-1×1 conv (``downsample``) when the channel count changes.

    Shapes: (B, in_planes, H, W) -> (B, out_planes, H, W).
    """

    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        if in_planes < 1 or out_planes < 4 or out_planes % 4:
            raise ValueError(f"ConvBlock needs in_planes >= 1 and out_planes a positive multiple of 4, "
                             f"got in_planes={in_planes}, out_planes={out_planes}")
        half, quarter = out_planes // 2, out_planes // 4
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = _conv3x3(in_planes, half)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = _conv3x3(half, quarter)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = _conv3x3(quarter, quarter)
        # Index 1 is a parameter-free ReLU: the checkpoint's keys are downsample.0.* and downsample.2.*.
        self.downsample = (nn.Sequential(nn.BatchNorm2d(in_planes), nn.ReLU(inplace=True),
                                         nn.Conv2d(in_planes, out_planes, kernel_size=1, bias=False))
                           if in_planes != out_planes else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(F.relu(self.bn1(x), inplace=True))
        out2 = self.conv2(F.relu(self.bn2(out1), inplace=True))
        out3 = self.conv3(F.relu(self.bn3(out2), inplace=True))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat((out1, out2, out3), dim=1) + residual


class HourGlass(nn.Module):
    """One hourglass of FAN: ``depth`` levels, each halving the resolution (Newell et al. 2016).

    Level l (from ``depth`` down to 1) on its input x at resolution r:
    skip = b1_l(x); low = b2_l(pool(x)) at r/2; low = level l−1 of low (or b2_plus_1(low) at the
    bottom); low = b3_l(low); output = skip + nearest-upsample×2(low).

    Feature taps (``return_features=True``), both ordered from the highest resolution to the lowest
    (r, r/2, …, r/2^depth, i.e. 64, 32, 16, 8, 4 in 2DFAN4), ``depth + 1`` tensors each:

    - high-to-low: what the downward pass hands to the upward pass at each resolution, the skip
      branches b1_depth … b1_1, then the bottleneck b2_plus_1 at the lowest resolution;
    - low-to-high: the upward features, b3_1's output at the lowest resolution, then the sums
      skip + upsample of every level (the last one is the hourglass output). The sums exist only
      inside the forward, which is why the hourglass collects the taps itself.

    Shapes: (B, C, H, W) -> (B, C, H, W), with H and W multiples of 2^depth.
    """

    def __init__(self, depth: int = 4, width: int = 256, pool: str = "avg"):
        super().__init__()
        if depth < 1:
            raise ValueError(f"HourGlass depth must be >= 1, got {depth}")
        self.depth, self.width, self.pool = depth, width, pool
        self._pool = _pool_fn(pool)
        self._add_level(depth)

    def _add_level(self, level: int) -> None:
        # Registration order is face-alignment's (b1, b2, the level below, b3), so state_dicts list alike.
        self.add_module(f"b1_{level}", ConvBlock(self.width, self.width))
        self.add_module(f"b2_{level}", ConvBlock(self.width, self.width))
        if level > 1:
            self._add_level(level - 1)
        else:
            self.add_module(f"b2_plus_{level}", ConvBlock(self.width, self.width))
        self.add_module(f"b3_{level}", ConvBlock(self.width, self.width))

    def extra_repr(self) -> str:
        return f"depth={self.depth}, width={self.width}, pool={self.pool!r}"

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """(B, C, H, W) -> output, or (output, high_to_low, low_to_high) with ``return_features``."""
        if not return_features:
            return self._level(self.depth, x, None, None)
        high_to_low: list[torch.Tensor] = []
        low_to_high: list[torch.Tensor] = []
        out = self._level(self.depth, x, high_to_low, low_to_high)
        return out, high_to_low, low_to_high[::-1]

    def _level(self, level, x, high_to_low, low_to_high):
        skip = self._modules[f"b1_{level}"](x)
        low = self._modules[f"b2_{level}"](self._pool(x, 2, stride=2))
        if high_to_low is not None:
            high_to_low.append(skip)
        if level > 1:
            low = self._level(level - 1, low, high_to_low, low_to_high)
        else:
            low = self._modules[f"b2_plus_{level}"](low)
            if high_to_low is not None:
                high_to_low.append(low)
        low = self._modules[f"b3_{level}"](low)
        out = skip + F.interpolate(low, scale_factor=2, mode="nearest")
        if low_to_high is not None:
            if level == 1:
                low_to_high.append(low)
            low_to_high.append(out)
        return out


@dataclass
class FANOutput:
    """Everything one FAN forward exposes (``FAN.forward(x, return_features=True)``).

    Attributes:
        heatmaps: one (B, num_landmarks, H/4, W/4) tensor per stack; the last is the prediction.
        high_to_low: per hourglass, its ``depth + 1`` high-to-low features (B, width, H/4/2^k, W/4/2^k),
            k = 0 … depth (64, 32, 16, 8, 4 at 256×256 input): the "h2l" of FAN-Face.
        low_to_high: per hourglass, its low-to-high features at the same resolutions: the "l2h".
    """

    heatmaps: list[torch.Tensor]
    high_to_low: list[list[torch.Tensor]]
    low_to_high: list[list[torch.Tensor]]


class FAN(nn.Module):
    """Face Alignment Network: a stem and ``num_stacks`` hourglasses with intermediate supervision.

    Stem: 7×7 conv stride 2 (+ BN, ReLU), ConvBlock, pool /2, two ConvBlocks: 256 -> 64 pixels.
    Stack i: hourglass m{i} -> top_m_{i} -> ReLU(bn_end{i}(conv_last{i})) = ll -> heatmaps l{i}(ll);
    the next stack's input is previous + bl{i}(ll) + al{i}(heatmaps) (no bl/al after the last stack).

    The defaults are face-alignment's 2DFAN4 (``FAN(num_modules=4)``), whose checkpoint loads with
    ``strict=True``. ``pool="avg"`` is the pooling of face-alignment's current FAN (1.5.0, which
    loads 2DFAN4-11f355bf06.pth.tar); ``pool="max"`` is that of its first releases (2DFAN-4.pth.tar):
    the weights have the same names either way. FAN-Face (Sec. 3.1) uses 2 stacks; see
    :func:`truncate_stacks` to take them from the 4-stack checkpoint.

    Args:
        num_stacks: number of hourglasses (face-alignment's ``num_modules``).
        num_landmarks: heatmap channels (68, iBUG).
        width: channels of the hourglasses; the stem uses width/4 and width/2. A multiple of 8.
        depth: levels per hourglass (4: features at 64, 32, 16, 8, 4).
        pool: "avg" or "max", the downsampling of the stem and the hourglasses.

    Shapes:
        input: (B, 3, H, W) RGB / 255, H and W multiples of 4·2^depth (256×256 for 2DFAN4).
        output: list of ``num_stacks`` heatmaps (B, num_landmarks, H/4, W/4), or a :class:`FANOutput`
        with ``return_features=True``.
    """

    def __init__(self, num_stacks: int = 4, num_landmarks: int = 68, width: int = 256, depth: int = 4,
                 pool: str = "avg"):
        super().__init__()
        if num_stacks < 1:
            raise ValueError(f"num_stacks must be >= 1, got {num_stacks}")
        if num_landmarks < 1:
            raise ValueError(f"num_landmarks must be >= 1, got {num_landmarks}")
        if width < 8 or width % 8:
            raise ValueError(f"width must be a positive multiple of 8 (the stem's ConvBlocks split "
                             f"width/2 into quarters), got {width}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.num_stacks, self.num_landmarks, self.width, self.depth = num_stacks, num_landmarks, width, depth
        self.pool = pool
        self._pool = _pool_fn(pool)

        self.conv1 = nn.Conv2d(3, width // 4, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(width // 4)
        self.conv2 = ConvBlock(width // 4, width // 2)
        self.conv3 = ConvBlock(width // 2, width // 2)
        self.conv4 = ConvBlock(width // 2, width)
        for i in range(num_stacks):
            self.add_module(f"m{i}", HourGlass(depth, width, pool))
            self.add_module(f"top_m_{i}", ConvBlock(width, width))
            self.add_module(f"conv_last{i}", nn.Conv2d(width, width, kernel_size=1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(width))
            self.add_module(f"l{i}", nn.Conv2d(width, num_landmarks, kernel_size=1))
            if i < num_stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(width, width, kernel_size=1))
                self.add_module(f"al{i}", nn.Conv2d(num_landmarks, width, kernel_size=1))

    def extra_repr(self) -> str:
        return (f"num_stacks={self.num_stacks}, num_landmarks={self.num_landmarks}, width={self.width}, "
                f"depth={self.depth}, pool={self.pool!r}")

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """Heatmaps of every stack; with ``return_features`` a :class:`FANOutput` (see the class)."""
        self._check_input(x)
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = self._pool(self.conv2(x), 2, stride=2)
        previous = self.conv4(self.conv3(x))

        heatmaps, high_to_low, low_to_high = [], [], []
        for i in range(self.num_stacks):
            hg = self._modules[f"m{i}"](previous, return_features)
            if return_features:
                hg, down, up = hg
                high_to_low.append(down)
                low_to_high.append(up)
            ll = self._modules[f"conv_last{i}"](self._modules[f"top_m_{i}"](hg))
            ll = F.relu(self._modules[f"bn_end{i}"](ll), inplace=True)
            heatmap = self._modules[f"l{i}"](ll)
            heatmaps.append(heatmap)
            if i < self.num_stacks - 1:
                previous = previous + self._modules[f"bl{i}"](ll) + self._modules[f"al{i}"](heatmap)
        if return_features:
            return FANOutput(heatmaps, high_to_low, low_to_high)
        return heatmaps

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"FAN: x must be a (B, 3, H, W) RGB tensor, got {got}")
        if not x.is_floating_point():
            raise TypeError(f"FAN: x must be floating point (RGB / 255), got {x.dtype}")
        multiple = 4 * 2 ** self.depth
        if x.shape[2] % multiple or x.shape[3] % multiple:
            raise ValueError(f"FAN: x's height and width must be multiples of {multiple} (4·2^depth, "
                             f"depth={self.depth}), got {tuple(x.shape[2:])}")


_STACK_KEY = re.compile(r"^(top_m_|conv_last|bn_end|bl|al|m|l)(\d+)\.")


def truncate_stacks(state_dict: Mapping[str, torch.Tensor], num_stacks: int) -> dict[str, torch.Tensor]:
    """The part of a FAN state_dict that a FAN with the first ``num_stacks`` stacks holds.

    FAN(n)'s keys are FAN(N)'s keys of the stem and stacks 0…n−1, minus bl{n−1}/al{n−1}, and its
    heatmaps equal the first n of FAN(N)'s: so FAN-Face's 2-stack FAN (FAN-Face Sec. 3.1) can be
    loaded from face-alignment's 4-stack checkpoint with ``strict=True``.

    Raises:
        ValueError: ``num_stacks`` < 1, or the state_dict has fewer stacks.
    """
    if num_stacks < 1:
        raise ValueError(f"num_stacks must be >= 1, got {num_stacks}")
    if not any(key.startswith(f"m{num_stacks - 1}.") for key in state_dict):
        raise ValueError(f"truncate_stacks: state_dict has no hourglass m{num_stacks - 1}, "
                         f"so it holds fewer than num_stacks={num_stacks} stacks")
    kept = {}
    for key, value in state_dict.items():
        match = _STACK_KEY.match(key)
        if match:
            name, stack = match.group(1), int(match.group(2))
            if stack >= num_stacks or (stack == num_stacks - 1 and name in ("bl", "al")):
                continue
        kept[key] = value
    return kept


def decode_landmarks(heatmaps: torch.Tensor, centre=None, scale=None, *, truncate: bool = False
                     ) -> torch.Tensor:
    """Landmark coordinates from heatmaps, on the heatmaps' device (face-alignment's get_preds_fromhm).

    Each map's argmax (the first one on ties) at column c, row r gives (c + 0.5, r + 0.5), pixel
    centres in heatmap coordinates; when the peak is not on the border, each coordinate moves a
    quarter pixel towards its higher neighbour along that axis (not at all if they are equal).

    With ``centre`` and ``scale`` the points go back through face-alignment's crop transform: the
    crop is a square of side h = 200·scale centred on ``centre`` in the original image, mapped onto
    the heatmap, so x_img = x·h/W + centre_x − h/2 (and y alike with H). face-alignment then casts
    to int32; ``truncate=True`` reproduces that (rounding toward zero).

    Args:
        heatmaps: (B, N, H, W) floating point.
        centre: (2,) or (B, 2) crop centres (x, y) in image pixels; with ``scale``, or neither.
        scale: a number, () or (B,): the crop side over 200 (face-alignment's reference scale).
        truncate: truncate the image coordinates toward zero, as face-alignment does.

    Returns:
        (B, N, 2) (x, y) in the heatmaps' dtype: heatmap coordinates, or image coordinates when
        ``centre`` and ``scale`` are given.
    """
    if not isinstance(heatmaps, torch.Tensor) or heatmaps.dim() != 4:
        got = tuple(heatmaps.shape) if isinstance(heatmaps, torch.Tensor) else type(heatmaps).__name__
        raise ValueError(f"decode_landmarks: heatmaps must be a (B, N, H, W) tensor, got {got}")
    if not heatmaps.is_floating_point():
        raise TypeError(f"decode_landmarks: heatmaps must be floating point, got {heatmaps.dtype}")
    if (centre is None) != (scale is None):
        raise ValueError("decode_landmarks: give both centre and scale (image coordinates) or neither "
                         "(heatmap coordinates)")
    b, n, h, w = heatmaps.shape
    if h == 0 or w == 0:
        raise ValueError(f"decode_landmarks: heatmaps must have a non-empty H and W, got {(h, w)}")
    flat = heatmaps.detach().reshape(b, n, h * w)
    index = flat.argmax(dim=2)
    row, col = index // w, index % w

    interior = (col > 0) & (col < w - 1) & (row > 0) & (row < h - 1)

    def at(offset: int) -> torch.Tensor:
        # Border peaks read a clamped (unused) neighbour; `interior` zeroes their shift.
        return flat.gather(2, (index + offset).clamp(0, h * w - 1).unsqueeze(2)).squeeze(2)

    shift_x = torch.sign(at(1) - at(-1)) * 0.25
    shift_y = torch.sign(at(w) - at(-w)) * 0.25
    zero = torch.zeros((), dtype=heatmaps.dtype, device=heatmaps.device)
    x = col.to(heatmaps.dtype) + 0.5 + torch.where(interior, shift_x, zero)
    y = row.to(heatmaps.dtype) + 0.5 + torch.where(interior, shift_y, zero)
    points = torch.stack((x, y), dim=2)
    if centre is None:
        return points

    centre_t, side = _crop_geometry(centre, scale, b, heatmaps)
    size = torch.tensor([w, h], dtype=heatmaps.dtype, device=heatmaps.device)
    image = points * (side / size) + centre_t - side / 2
    return image.trunc() if truncate else image


def _crop_geometry(centre, scale, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """centre as (B or 1, 1, 2) and the crop side 200·scale as (B or 1, 1, 1), on ``like``'s device."""
    centre_t = torch.as_tensor(centre, dtype=like.dtype, device=like.device)
    if centre_t.shape not in ((2,), (batch, 2)):
        raise ValueError(f"decode_landmarks: centre must have shape (2,) or ({batch}, 2), "
                         f"got {tuple(centre_t.shape)}")
    scale_t = torch.as_tensor(scale, dtype=like.dtype, device=like.device)
    if scale_t.shape not in ((), (1,), (batch,)):
        raise ValueError(f"decode_landmarks: scale must be a number or have shape ({batch},), "
                         f"got {tuple(scale_t.shape)}")
    if not bool((scale_t > 0).all()):
        raise ValueError("decode_landmarks: scale must be > 0")
    return centre_t.reshape(-1, 1, 2), 200.0 * scale_t.reshape(-1, 1, 1)
