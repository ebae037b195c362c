"""Identity parameters of the synthetic face world: shape, placement, colours and local marks.

Head frame (units of about half a face width): x to the image's right in a frontal view, y down,
z towards the camera; the origin is inside the head, level with the eyes. Every value is a pure
function of (world seed, identity id, the population settings), so an identity looks the same in
every image and process.

Parameters are *global* (:data:`GLOBAL_PARAMETERS`: skin, hair, eye and lip colour, head and jaw
shape, hair style, blush, beard), which set an image's colours and outline, or *local* (eyes, brows,
nose, mouth, ears, moles, scar, freckles). Look-alike cohorts (:func:`sample_identities`'
``cohort``) draw the global ones once per cohort, so identity lives in the local detail.
"""
from __future__ import annotations

import torch

from .random import make_key, uniform, uniform_range

__all__ = ["GLOBAL_PARAMETERS", "MAX_LOCAL_VARIETY", "sample_identities"]

# (low, high) of each shape parameter; units are head units unless named otherwise.
_SHAPE = {
    # cranium ellipsoid (radii and the height of its centre)
    "cranium_rx": (0.90, 1.06), "cranium_ry": (1.18, 1.36), "cranium_rz": (1.02, 1.18),
    "cranium_y": (-0.32, -0.18),
    # lower face: the jaw ellipsoid sets jaw width, face length (chin) and chin prominence
    "jaw_rx": (0.62, 0.90), "jaw_ry": (0.66, 0.82), "jaw_rz": (0.78, 0.92), "jaw_y": (0.34, 0.48),
    "jaw_z": (0.0, 0.12),
    # eyes: half distance between centres, height, half width, upper/lower lid heights, canthal tilt
    "eye_x": (0.31, 0.40), "eye_y": (-0.08, 0.02), "eye_w": (0.115, 0.16), "eye_hu": (0.045, 0.075),
    "eye_hl": (0.030, 0.050), "eye_tilt": (-0.15, 0.20), "iris_r": (0.042, 0.056),
    # brows: height above the eye, half length, thickness, arch, tilt
    "brow_dy": (0.14, 0.24), "brow_w": (0.15, 0.21), "brow_t": (0.020, 0.045), "brow_arch": (0.0, 0.07),
    "brow_tilt": (-0.20, 0.15),
    # nose: tip height, length of the ridge, depth (protrusion), half width, tilt of its long axis
    "nose_tip_y": (0.34, 0.50), "nose_depth": (0.24, 0.40), "nose_w": (0.11, 0.17), "nose_tilt": (0.15, 0.45),
    "nostril_w": (0.10, 0.15),
    # mouth: height, half width, lip thicknesses, cupid's bow
    "mouth_y": (0.70, 0.84), "mouth_w": (0.19, 0.28), "lip_upper": (0.030, 0.060), "lip_lower": (0.040, 0.075),
    "lip_bow": (0.0, 0.5),
    # ears: height, size, tilt
    "ear_y": (-0.05, 0.12), "ear_size": (0.24, 0.34), "ear_tilt": (-0.25, 0.10),
    # hair: thickness of the volume, front hairline height, how far down the back it goes, coverage
    "hair_thickness": (0.02, 0.22), "hairline": (-0.95, -0.62), "hair_back": (0.2, 1.1), "hair_amount": (0.0, 1.0),
    # cheeks: blush strength
    "blush": (0.0, 0.35),
}

# Skin tones from light to dark (sRGB in [0, 1]); an identity's tone is a blend of two neighbours.
_SKIN = torch.tensor([[0.96, 0.80, 0.69], [0.90, 0.70, 0.56], [0.80, 0.58, 0.42],
                      [0.62, 0.42, 0.28], [0.42, 0.27, 0.17], [0.28, 0.18, 0.12]])
_HAIR = torch.tensor([[0.06, 0.05, 0.05], [0.22, 0.14, 0.08], [0.45, 0.30, 0.16], [0.80, 0.66, 0.40],
                      [0.55, 0.22, 0.08], [0.62, 0.62, 0.62], [0.12, 0.10, 0.09]])
_EYE = torch.tensor([[0.30, 0.18, 0.08], [0.15, 0.09, 0.05], [0.30, 0.45, 0.65], [0.35, 0.48, 0.30],
                     [0.45, 0.47, 0.50]])

MAX_MOLES = 3

GLOBAL_PARAMETERS = ("cranium_rx", "cranium_ry", "cranium_rz", "cranium_y", "jaw_rx", "jaw_ry", "jaw_rz", "jaw_y",
                     "jaw_z", "hair_thickness", "hairline", "hair_back", "hair_amount", "blush",
                     "skin", "hair", "eye", "lip", "beard")
"""What members of a look-alike cohort share: colours, head and jaw shape, hair style, blush and beard
(what mean colours and a head's outline see); every other parameter is the identity's own."""

MAX_LOCAL_VARIETY = 1.5
"""Widest ``local_variety``: beyond it the nose base could reach the upper lip."""

_COHORT_STREAM = 0x636F686F7274  # a key part no identity key has, so a cohort's draw is its own


def _palette(table: torch.Tensor, u: torch.Tensor, blend: bool) -> torch.Tensor:
    """Pick (and optionally blend between neighbouring) rows of a colour table with u in [0, 1)."""
    position = u * (len(table) - 1 if blend else len(table))
    low = position.floor().long().clamp(max=len(table) - 1)
    if not blend:
        return table[low]
    high = (low + 1).clamp(max=len(table) - 1)
    t = (position - low).unsqueeze(-1)
    return table[low] * (1 - t) + table[high] * t


def _local_ranges(variety: float) -> dict[str, tuple[float, float]]:
    """:data:`_SHAPE` with every local range scaled by ``variety`` about its middle (itself at 1)."""
    if variety == 1.0:
        return _SHAPE
    scaled = {}
    for name, (low, high) in _SHAPE.items():
        middle, half = (low + high) / 2, (high - low) / 2 * (1.0 if name in GLOBAL_PARAMETERS else variety)
        scaled[name] = (middle - half, middle + half)
    return scaled


def sample_identities(seed: int, identity: torch.Tensor, cohort: torch.Tensor | None = None,
                      cohort_jitter: float = 0.0, local_variety: float = 1.0) -> dict[str, torch.Tensor]:
    """Parameters of the given identities.

    Args:
        seed: the world's seed.
        identity: (B,) int64 identity ids.
        cohort: (B,) int64 look-alike cohort of each identity, or None (every identity its own).
            Members of one cohort take the :data:`GLOBAL_PARAMETERS` drawn for the cohort.
        cohort_jitter: in [0, 1]: a member's global parameters are lerp(cohort's, own, cohort_jitter)
            (0: identical within a cohort; 1: as without cohorts).
        local_variety: in [0, :data:`MAX_LOCAL_VARIETY`]: the ranges of the local shape parameters
            (eyes, brows, nose, mouth, ears) scaled about their middles (1: the default ranges).
    Returns:
        name -> float32 tensor (B,) for shape values, (B, 3) for colours ("skin", "hair", "eye", "lip"),
        (B, MAX_MOLES, 4) for "moles" (x, y, z on the head surface is finished by the face model; here
        x, y, radius, present), (B, 4) "scar" (x0, y0, angle, length; length 0 = none), "freckles"
        (B,) density (0 = none), "freckle_seed" (B,) and "beard" (B,) density.
    """
    if not 0.0 <= cohort_jitter <= 1.0:
        raise ValueError(f"cohort_jitter: expected a number in [0, 1], got {cohort_jitter!r}")
    if not 0.0 <= local_variety <= MAX_LOCAL_VARIETY:
        raise ValueError(f"local_variety: expected a number in [0, {MAX_LOCAL_VARIETY}], got {local_variety!r}")
    params = _draw(make_key(seed, identity), _local_ranges(local_variety))
    if cohort is None:
        return params
    if cohort.shape != identity.shape:
        raise ValueError(f"cohort: expected shape {tuple(identity.shape)} like identity, got {tuple(cohort.shape)}")
    shared = _draw(make_key(seed, cohort, _COHORT_STREAM), _SHAPE)
    for name in GLOBAL_PARAMETERS:
        params[name] = torch.lerp(shared[name], params[name], cohort_jitter)
    return params


def _draw(key: torch.Tensor, ranges: dict[str, tuple[float, float]]) -> dict[str, torch.Tensor]:
    """Every parameter of :func:`sample_identities` drawn from ``key`` (B,), shape values in ``ranges``."""
    params = uniform_range(key, "identity.shape", ranges)
    u = uniform(key, "identity.colour", 8).to(torch.float32)
    skin = _palette(_SKIN, u[:, 0], blend=True) * (0.94 + 0.12 * u[:, 1:4])
    params["skin"] = skin.clamp(0, 1)
    hair = _palette(_HAIR, u[:, 4], blend=False)
    # Older identities go grey; the grey mix is part of who they are.
    params["hair"] = torch.lerp(hair, torch.full_like(hair, 0.7), (u[:, 5:6] - 0.8).clamp(min=0) * 4)
    params["eye"] = _palette(_EYE, u[:, 6], blend=False)
    params["lip"] = skin * torch.tensor([0.82, 0.52, 0.52]) * (0.9 + 0.2 * u[:, 7:8])

    marks = uniform(key, "identity.marks", 4 * MAX_MOLES + 10).to(torch.float32)
    moles = marks[:, : 4 * MAX_MOLES].view(-1, MAX_MOLES, 4)
    # Moles anywhere on the visible head: x, y over the face and sides; present with probability 0.35.
    params["moles"] = torch.stack([
        (moles[..., 0] * 2 - 1) * 1.0, moles[..., 1] * 1.5 - 0.7, 0.014 + 0.022 * moles[..., 2],
        (moles[..., 3] < 0.35).float()], dim=-1)
    rest = marks[:, 4 * MAX_MOLES:]
    has_scar = rest[:, 0] < 0.25
    params["scar"] = torch.stack([
        (rest[:, 1] * 2 - 1) * 0.7, rest[:, 2] * 1.2 - 0.6, rest[:, 3] * torch.pi,
        torch.where(has_scar, 0.12 + 0.25 * rest[:, 4], torch.zeros_like(rest[:, 4]))], dim=-1)
    params["freckles"] = torch.where(rest[:, 5] < 0.3, 0.25 + 0.5 * rest[:, 6], torch.zeros_like(rest[:, 6]))
    params["freckle_seed"] = rest[:, 7] * 1000.0
    params["beard"] = torch.where(rest[:, 8] < 0.3, 0.3 + 0.6 * rest[:, 9], torch.zeros_like(rest[:, 9]))
    return params
