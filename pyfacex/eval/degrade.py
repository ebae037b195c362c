"""Evaluation-time degradations of a protocol's images (the ``@`` options of a protocol spec).

- :func:`down_up_transform`: every image down-sampled to size×size and up-sampled back (QAFace,
  Sec. 3.1, Tab. 1: LFW, CFP-FP, CPLFW, CALFW, AgeDB at 8×8 and 16×16);
- :class:`BlurAllButOne`: linear motion blur of one filter size on all frames but one of every set
  of N frames (Face Aggregation Network, Sec. 4.4, Tab. 4: 9 of N = 10 frames, filter sizes 7–17),
  applied per set through :class:`DegradedSets`.

Both act on uint8 images, as the stored images a degraded benchmark would hold; the blur's random
draws (which frame stays sharp, each blurred frame's angle) come from a generator seeded by
(``seed``, set index), so a result does not depend on batching, workers or evaluation order.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..data import RaggedSetDataset
from ..data._args import check_int
from ..data.transforms import down_up, motion_blur

__all__ = ["down_up_transform", "BlurAllButOne", "DegradedSets"]


def down_up_transform(size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 (B, 3, H, W) -> uint8 (B, 3, H, W) down-sampled to ``size``×``size`` and back (bilinear,
    :func:`pyfacex.data.transforms.down_up`); QAFace, Tab. 1's "8×8" and "16×16" test sets."""
    return functools.partial(down_up, size=check_int("size", size, 1))


class BlurAllButOne:
    """Motion blur of filter size ``length`` on every frame of a set but one (Face Aggregation Network,
    Sec. 4.4, Tab. 4: "motion blur to 9 out of N = 10 images").

    For set ``index`` a generator seeded with (``seed``, ``index``) draws the frame left sharp
    (uniform over the set) and one angle per blurred frame (uniform in [0°, 180°), as the paper's
    training augmentation); :func:`pyfacex.data.transforms.motion_blur` blurs with a line kernel of
    ``length`` pixels. A set of one frame is left sharp.

    Args:
        length: the filter size in pixels, >= 1 (1 leaves frames unchanged).
        seed: >= 0.
    """

    def __init__(self, length: int, seed: int = 0):
        self.length = check_int("length", length, 1)
        self.seed = check_int("seed", seed, 0)

    def __call__(self, frames: torch.Tensor, index: int) -> torch.Tensor:
        """frames (N, 3, H, W) uint8 of set ``index`` -> the same with N − 1 frames blurred."""
        if not isinstance(frames, torch.Tensor) or frames.dim() != 4:
            raise ValueError(f"frames: expected (N, 3, H, W), got {getattr(frames, 'shape', type(frames).__name__)}")
        n = frames.shape[0]
        generator = torch.Generator().manual_seed(_set_seed(self.seed, check_int("index", index, 0)))
        sharp = int(torch.randint(n, (1,), generator=generator))
        angles = torch.rand(n, generator=generator, dtype=torch.float64) * 180.0
        blurred = torch.tensor([i != sharp for i in range(n)])
        out = frames.clone()
        if bool(blurred.any()):
            out[blurred] = motion_blur(frames[blurred], angles[blurred], float(self.length))
        return out

    def __repr__(self) -> str:
        return f"BlurAllButOne(length={self.length}, seed={self.seed})"


def _set_seed(seed: int, index: int) -> int:
    """A 32-bit seed for set ``index`` under ``seed`` (splitmix64 of both, folded): torch's CPU generator
    keeps only the low 32 bits of its seed, so (seed << 32) + index would ignore ``seed``."""
    mask = (1 << 64) - 1
    x = (seed * 0x9E3779B97F4A7C15 + index + 1) & mask
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
    x ^= x >> 31
    return (x ^ (x >> 32)) & 0xFFFFFFFF


class DegradedSets(RaggedSetDataset):
    """A :class:`pyfacex.data.RaggedSetDataset` whose item i is ``(degrade(members, i), i)``.

    Args:
        sets, load: as :class:`~pyfacex.data.RaggedSetDataset`.
        degrade: ``degrade(members (n_i, ...), set index) -> (n_i, ...)``, e.g. :class:`BlurAllButOne`.
    """

    def __init__(self, sets: Sequence[Sequence[Any]], load: Callable[[Any], torch.Tensor],
                 degrade: Callable[[torch.Tensor, int], torch.Tensor]):
        super().__init__(sets, load)
        if not callable(degrade):
            raise TypeError(f"degrade: expected a callable (members, set index) -> members, "
                            f"got {type(degrade).__name__}")
        self.degrade = degrade

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        members, index = super().__getitem__(index)
        return self.degrade(members, index), index
