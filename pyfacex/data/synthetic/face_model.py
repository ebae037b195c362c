"""The head as ellipsoids, and the 68 iBUG landmarks on it, from identity and expression.

Head frame as in :mod:`.identity` (x image-right in a frontal view, y down, z towards the camera).
Primitives, in this order: cranium, jaw (lower face), nose, two ears, neck, shoulders, hair (a shell
over the cranium cut by a tilted plane at the hairline); an occluding hand is added by the renderer.
The skin of the face is the union of cranium, jaw and nose; features (eyes, brows, mouth, marks) are
painted on it by :mod:`.texture` from the same curves that place the landmarks, so a landmark sits on
the feature it names.

iBUG 68 order, image-left first in a frontal view: 0-16 jaw line, 17-21 and 22-26 brows (left to
right), 27-30 nose ridge down to the tip, 31-35 nose base, 36-41 and 42-47 eyes (corner, two upper
lid points, corner, two lower lid points), 48-59 outer lips from the left corner over the upper
lip, 60-67 inner lips.
"""
from __future__ import annotations

import math

import torch

from .raycast import Ellipsoids, front_depth, point_basis, quadrics

__all__ = ["PRIMITIVES", "FACE_PRIMITIVES", "shape_with_expression", "head_primitives", "hair_clip_plane",
           "landmarks_3d", "lift", "mouth_curves", "eye_curves", "brow_curve"]

PRIMITIVES = ("cranium", "jaw", "nose", "ear_right", "ear_left", "neck", "shoulders", "hair")
FACE_PRIMITIVES = 3  # cranium, jaw, nose: the skin the face features are painted on
HAIR = PRIMITIVES.index("hair")


def shape_with_expression(identity: dict[str, torch.Tensor], nuisance: dict[str, torch.Tensor]) -> dict:
    """Identity parameters moved by the expression of each image (all (B,) float32)."""
    p = dict(identity)
    p["eye_open"] = 1.0 - 0.92 * nuisance["eye_close"]
    p["brow_y"] = identity["eye_y"] - identity["brow_dy"] - 0.05 * nuisance["brow_raise"]
    p["mouth_open"] = 0.17 * nuisance["mouth_open"]
    p["smile"] = 0.05 * nuisance["smile"]
    p["mouth_w"] = identity["mouth_w"] * (1 + 0.15 * nuisance["smile"].clamp(min=0))
    p["jaw_y"] = identity["jaw_y"] + 0.08 * nuisance["mouth_open"]
    p["gaze_x"], p["gaze_y"] = nuisance["gaze_x"], nuisance["gaze_y"]
    return p


def _axes_yz(tilt: torch.Tensor) -> torch.Tensor:
    """Rotation about x by ``tilt`` (B,) as axis rows (B, 3, 3)."""
    c, s = torch.cos(tilt), torch.sin(tilt)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    return torch.stack([torch.stack([one, zero, zero], -1), torch.stack([zero, c, s], -1),
                        torch.stack([zero, -s, c], -1)], dim=-2)


def _axes_ear(side: float, tilt: torch.Tensor) -> torch.Tensor:
    """Ear axes: flat across x, flared outwards by 0.35 rad about y, tilted about z."""
    flare = torch.full_like(tilt, side * 0.35)
    cf, sf, ct, st = torch.cos(flare), torch.sin(flare), torch.cos(tilt), torch.sin(tilt)
    zero = torch.zeros_like(ct)
    about_y = torch.stack([torch.stack([cf, zero, -sf], -1), torch.stack([zero, torch.ones_like(ct), zero], -1),
                           torch.stack([sf, zero, cf], -1)], dim=-2)
    about_z = torch.stack([torch.stack([ct, side * st, zero], -1), torch.stack([-side * st, ct, zero], -1),
                           torch.stack([zero, zero, torch.ones_like(ct)], -1)], dim=-2)
    return about_z @ about_y


def _support(axes: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Offset from an ellipsoid's centre to its front-most (largest z) point. (B,3,3),(B,3) -> (B,3)."""
    weights = radii ** 2 * axes[..., 2]                        # r_i² (m_i·e_z)
    offset = (weights.unsqueeze(-1) * axes).sum(-2)
    return offset / (weights * axes[..., 2]).sum(-1, keepdim=True).sqrt()


def _width(y: torch.Tensor, centre_y: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor) -> torch.Tensor:
    return rx * (1 - ((y - centre_y) / ry) ** 2).clamp(min=0).sqrt()


def _face_width(p: dict, y: torch.Tensor) -> torch.Tensor:
    """Half width of the frontal silhouette of cranium ∪ jaw at heights y (B, K)."""
    unsq = {k: p[k].unsqueeze(-1) for k in ("cranium_y", "cranium_rx", "cranium_ry", "jaw_y", "jaw_rx", "jaw_ry")}
    return torch.maximum(_width(y, unsq["cranium_y"], unsq["cranium_rx"], unsq["cranium_ry"]),
                         _width(y, unsq["jaw_y"], unsq["jaw_rx"], unsq["jaw_ry"]))


def _skin_primitives(p: dict) -> Ellipsoids:
    """Cranium, jaw and nose (the face skin), also used alone to lift landmarks onto the surface."""
    batch = p["cranium_rx"].shape[0]
    zero = torch.zeros(batch)
    eye = torch.eye(3).expand(batch, 3, 3)
    cranium_c = torch.stack([zero, p["cranium_y"], zero - 0.05], -1)
    cranium_r = torch.stack([p["cranium_rx"], p["cranium_ry"], p["cranium_rz"]], -1)
    jaw_c = torch.stack([zero, p["jaw_y"], p["jaw_z"]], -1)
    jaw_r = torch.stack([p["jaw_rx"], p["jaw_ry"], p["jaw_rz"]], -1)
    # The nose: its front-most point is the tip, protruding nose_depth from the skin below it.
    nose_axes = _axes_yz(-p["nose_tilt"])
    ridge = p["nose_tip_y"] - p["eye_y"]
    nose_r = torch.stack([p["nose_w"], 0.55 * ridge + 0.06, 0.8 * p["nose_depth"]], -1)
    skin = Ellipsoids(torch.stack([cranium_c, jaw_c], 1), eye.unsqueeze(1).expand(batch, 2, 3, 3),
                      torch.stack([cranium_r, jaw_r], 1))
    skin_z = lift(skin, zero.unsqueeze(-1), p["nose_tip_y"].unsqueeze(-1))[..., 0]
    tip = torch.stack([zero, p["nose_tip_y"], skin_z + p["nose_depth"]], -1)
    nose_c = tip - _support(nose_axes, nose_r)
    return Ellipsoids(torch.cat([skin.centre, nose_c.unsqueeze(1)], 1),
                      torch.cat([skin.axes, nose_axes.unsqueeze(1)], 1),
                      torch.cat([skin.radii, nose_r.unsqueeze(1)], 1))


def hair_clip_plane(p: dict) -> torch.Tensor:
    """Hair is kept where y + tilt·z <= offset (head frame): (B, 4) = (0, 1, tilt, offset)."""
    tilt = 0.6 * p["hair_back"]
    offset = p["hairline"] + tilt * 0.75
    zero = torch.zeros_like(tilt)
    return torch.stack([zero, torch.ones_like(tilt), tilt, offset], -1)


def head_primitives(p: dict) -> Ellipsoids:
    """The head's primitives in the head frame, (B, 8) in the order of :data:`PRIMITIVES`."""
    skin = _skin_primitives(p)
    batch = p["cranium_rx"].shape[0]
    zero, one = torch.zeros(batch), torch.ones(batch)
    eye = torch.eye(3).expand(batch, 3, 3)
    ear_size = p["ear_size"]
    ear_x = _face_width(p, p["ear_y"].unsqueeze(-1))[:, 0] * 0.97
    ear_r = torch.stack([0.07 * one, ear_size, 0.6 * ear_size], -1)
    ears_c = [torch.stack([side * ear_x, p["ear_y"], zero - 0.12], -1) for side in (-1.0, 1.0)]
    ears_axes = [_axes_ear(side, p["ear_tilt"]) for side in (-1.0, 1.0)]
    neck_c = torch.stack([zero, p["jaw_y"] + 0.65, zero - 0.25], -1)
    neck_r = torch.stack([0.52 * one, 0.75 * one, 0.5 * one], -1)
    body_c = torch.stack([zero, p["jaw_y"] + 1.95, zero - 0.3], -1)
    body_r = torch.stack([1.9 * one, 0.85 * one, 0.8 * one], -1)
    thickness = p["hair_thickness"] * (p["hair_amount"] > 0.15).float()
    hair_c = torch.stack([zero, p["cranium_y"] - 0.3 * thickness, zero - 0.08], -1)
    # A bald head keeps a hair shell just inside the cranium, where it is never seen.
    hair_r = torch.stack([p["cranium_rx"], p["cranium_ry"], p["cranium_rz"]], -1) + \
        torch.where(thickness > 0, thickness, -0.02 * one).unsqueeze(-1)
    centres = [*skin.centre.unbind(1), *ears_c, neck_c, body_c, hair_c]
    axes = [*skin.axes.unbind(1), *ears_axes, eye, eye, eye]
    radii = [*skin.radii.unbind(1), ear_r, ear_r, neck_r, body_r, hair_r]
    return Ellipsoids(torch.stack(centres, 1), torch.stack(axes, 1), torch.stack(radii, 1))


def lift(skin: Ellipsoids, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z of the front-most skin surface above head-frame points (x, y) (B, K), NaN where no skin."""
    eye = torch.eye(3).expand(x.shape[0], 3, 3)
    depth = front_depth(quadrics(skin, eye), point_basis(x, y)).amax(1)
    return torch.where(depth > -1e3, depth, torch.full_like(depth, math.nan))


# -------------------------------------------------------------------------- feature curves
# Each takes head-frame x, y broadcastable against the parameters and returns curve values; the
# texture evaluates them at every pixel, the landmarks at a few points.

def eye_curves(p: dict, dx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Upper and lower lid heights at offset dx from an eye centre (mirrored: dx > 0 is outwards
    on the right-hand eye). Parameters are (B, 1) views."""
    q = 1 - (dx / p["eye_w"]) ** 2
    mid = p["eye_y"] - p["eye_tilt"] * dx
    opening = p["eye_open"] * q
    return mid - p["eye_hu"] * opening, mid + p["eye_hl"] * opening


def brow_curve(p: dict, dx: torch.Tensor) -> torch.Tensor:
    """Height of the brow's centre line at offset dx from the brow centre (dx > 0 outwards)."""
    return p["brow_y"] - p["brow_arch"] * (1 - (dx / p["brow_w"]) ** 2) - p["brow_tilt"] * dx


def mouth_curves(p: dict, q: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Outer upper, inner upper, inner lower and outer lower lip heights at q = x / half width."""
    q2 = q * q
    round_ = (1 - q2).clamp(min=0)
    centre = p["mouth_y"] - p["smile"] * q2
    inner_up = centre - 0.5 * p["mouth_open"] * round_
    inner_low = centre + 0.5 * p["mouth_open"] * round_
    root = round_.sqrt()
    bow = 1 - 0.5 * p["lip_bow"] * torch.exp(-(q / 0.18) ** 2)
    return inner_up - p["lip_upper"] * root * bow, inner_up, inner_low, inner_low + p["lip_lower"] * root


# -------------------------------------------------------------------------- landmarks

_EYE_DX = torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0, 1 / 3, -1 / 3])
_EYE_UPPER = torch.tensor([0, 1, 1, 0, 0, 0], dtype=torch.bool)
_EYE_LOWER = torch.tensor([0, 0, 0, 0, 1, 1], dtype=torch.bool)
_BROW_DX = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])
_OUTER_Q = torch.tensor([-1.0, -2 / 3, -1 / 3, 0, 1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3, 0, -1 / 3, -2 / 3])
_INNER_Q = torch.tensor([-0.9, -0.5, 0.0, 0.5, 0.9, 0.5, 0.0, -0.5])


def _column(p: dict) -> dict:
    return {k: v.unsqueeze(-1) for k, v in p.items() if v.dim() == 1}


def landmarks_3d(p: dict) -> torch.Tensor:
    """The 68 landmarks in the head frame, (B, 68, 3), z on the skin surface (NaN off the skin)."""
    c = _column(p)
    batch = p["cranium_rx"].shape[0]
    xs, ys = [], []
    # Jaw line: from eye level on the image-left side, round the chin, up to the other side.
    top = c["eye_y"] + 0.08
    chin = torch.maximum(c["jaw_y"] + c["jaw_ry"], c["cranium_y"] + c["cranium_ry"]) - 0.04
    phi = torch.linspace(0, math.pi, 17)
    jaw_y = top + (chin - top) * torch.sin(phi)
    xs.append(-torch.cos(phi) * 0.96 * _face_width(p, jaw_y))
    ys.append(jaw_y)
    # Brows (17-21 image-left, outer to inner; 22-26 inner to outer): mirrored offsets.
    for side in (-1.0, 1.0):
        dx = _BROW_DX * c["brow_w"]
        outward = side * dx
        xs.append(side * (c["eye_x"] + 0.01) + dx)
        ys.append(brow_curve(c, outward))
    # Nose ridge 27-30 from between the eyes to the tip, nose base 31-35.
    ridge_t = torch.tensor([0.0, 1 / 3, 2 / 3, 1.0])
    xs.append(torch.zeros(batch, 4))
    ys.append(c["eye_y"] + (c["nose_tip_y"] - c["eye_y"]) * ridge_t)
    base_t = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])
    xs.append(base_t * c["nostril_w"])
    ys.append(c["nose_tip_y"] + 0.09 - 0.05 * base_t.abs())
    # Eyes 36-41 (image left), 42-47.
    for side in (-1.0, 1.0):
        dx = _EYE_DX * c["eye_w"]
        upper, lower = eye_curves(c, side * dx)
        mid = p["eye_y"].unsqueeze(-1) - c["eye_tilt"] * side * dx
        xs.append(side * c["eye_x"] + dx)
        ys.append(torch.where(_EYE_UPPER, upper, torch.where(_EYE_LOWER, lower, mid)))
    # Lips: outer 48-59 (upper for 49-53, lower for 55-59), inner 60-67.
    outer_up, _, _, outer_low = mouth_curves(c, _OUTER_Q)
    centre = c["mouth_y"] - c["smile"] * _OUTER_Q ** 2
    index = torch.arange(12)
    is_upper = (index >= 1) & (index <= 5)
    is_lower = index >= 7
    xs.append(_OUTER_Q * c["mouth_w"])
    ys.append(torch.where(is_upper, outer_up, torch.where(is_lower, outer_low, centre)))
    _, inner_up, inner_low, _ = mouth_curves(c, _INNER_Q)
    inner_index = torch.arange(8)
    xs.append(_INNER_Q * c["mouth_w"])
    ys.append(torch.where((inner_index >= 1) & (inner_index <= 3), inner_up,
                          torch.where(inner_index >= 5, inner_low, c["mouth_y"] - c["smile"] * _INNER_Q ** 2)))
    x, y = torch.cat(xs, -1), torch.cat(ys, -1)
    z = lift(_skin_primitives(p), x, y)
    return torch.stack([x, y, z], -1)
