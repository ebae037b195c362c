"""Unrecognisable training faces: a stated fraction of a synthetic training set rendered so degraded
that no identity is left to learn (QAFace, Sec. 1 and 3.5, Fig. 1: "unrecognizable samples that even
humans can not correctly recognize", whose large angle to their centre distracts an injected centre).

Which images: exactly round(fraction · N) of the N images of a set, those whose uniform number, a pure
function of (world seed, identity, sample), is smallest, so the choice is the same however the set is
rendered. The kinds take turns in that order: extreme blur, heavy occlusion, very low resolution,
extreme blur, ... Each chosen image is the world's own image of (identity, sample) (same pose, light,
background) re-rendered with its kind's render overrides (:meth:`.world.SyntheticFaceWorld.render`):

- ``blur``: Gaussian blur of sigma 12 pixels at 112 (the eyes, brows, nose and mouth melt into the skin);
- ``occlusion``: an image-space block (occluder code 5) over the whole inner face, eyes to chin;
- ``low_resolution``: down to 4 × 4 pixels at 112 and back (below the 8 × 8 of QAFace's Tab. 1 test).

Sizes are given at 112 pixels and scale with the world's size, as the nuisance knobs do.
"""
from __future__ import annotations

import torch

from .random import make_key, uniform
from .world import FaceBatch, SyntheticFaceWorld, _check_fraction

__all__ = ["UNRECOGNISABLE_KINDS", "unrecognisable_overrides", "choose_unrecognisable", "make_unrecognisable"]

UNRECOGNISABLE_KINDS = ("blur", "occlusion", "low_resolution")
"""The degradations of an unrecognisable image; code k + 1 in a set's ``unrecognisable`` array is kind k
(code 0: an ordinary image)."""

_BLUR_SIGMA = 12.0      # pixels at 112
_RESOLUTION = 4.0       # pixels at 112
_BLOCK = {"occluder": "block", "occluder_size": 1.6, "occluder_x": 0.0, "occluder_y": -0.1}
_STREAM = "training.unrecognisable"


def unrecognisable_overrides(kind: str, size: int) -> dict:
    """The render overrides that make a face of side ``size`` pixels unrecognisable in ``kind`` way.

    Raises:
        ValueError naming ``kind`` when it is none of :data:`UNRECOGNISABLE_KINDS`.
    """
    scale = size / 112.0
    if kind == "blur":
        return {"blur": _BLUR_SIGMA * scale}
    if kind == "occlusion":
        return dict(_BLOCK)
    if kind == "low_resolution":
        return {"resolution": float(max(2, round(_RESOLUTION * scale)))}
    raise ValueError(f"kind: expected one of {', '.join(UNRECOGNISABLE_KINDS)}, got {kind!r}")


def choose_unrecognisable(seed: int, identity: torch.Tensor, sample: torch.Tensor, fraction: float) -> torch.Tensor:
    """Which images of a set are unrecognisable, and how (module docstring).

    Args:
        seed: the world seed.
        identity, sample: (N,) int64, every image of the set.
        fraction: in [0, 1]; exactly round(fraction · N) images are chosen.
    Returns:
        (N,) int64 codes: 0 ordinary, k + 1 for kind ``UNRECOGNISABLE_KINDS[k]``.
    Raises:
        TypeError / ValueError naming ``fraction`` outside [0, 1].
    """
    fraction = _check_fraction("fraction", fraction, 1)
    identity, sample = torch.as_tensor(identity, dtype=torch.int64), torch.as_tensor(sample, dtype=torch.int64)
    codes = torch.zeros(identity.numel(), dtype=torch.int64)
    count = round(fraction * identity.numel())
    if count:
        draws = uniform(make_key(seed, identity, sample), _STREAM, 1)[:, 0]
        chosen = torch.argsort(draws, stable=True)[:count]
        codes[chosen] = torch.arange(count) % len(UNRECOGNISABLE_KINDS) + 1
    return codes


def make_unrecognisable(world: SyntheticFaceWorld, batch: FaceBatch, codes: torch.Tensor) -> FaceBatch:
    """``batch`` with every image whose code is k + 1 replaced (in place) by the same face rendered with
    the overrides of kind k: its images (B, 3, S, S), landmarks, visibility, pose and nuisance values
    (``nuisance["blur"]``, ``["resolution"]``, ``["occluder"]`` then record the degradation).

    Args:
        world: the world that rendered ``batch``.
        batch: B rendered still images (with ``identity`` and ``sample``).
        codes: (B,) int64 codes of :func:`choose_unrecognisable`.
    """
    for code, kind in enumerate(UNRECOGNISABLE_KINDS, 1):
        rows = (codes == code).nonzero().flatten()
        if rows.numel() == 0:
            continue
        again = world.render(batch.identity[rows], batch.sample[rows], **unrecognisable_overrides(kind, world.size))
        for name in ("images", "landmarks", "visible", "pose"):
            getattr(batch, name)[rows] = getattr(again, name)
        for name, values in batch.nuisance.items():
            values[rows] = again.nuisance[name]
    return batch
