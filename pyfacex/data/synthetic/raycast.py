"""Orthographic ray casting of ellipsoids, batched over images, primitives and query points.

Camera frame: X right, Y down (pixels), Z towards the viewer; rays run along −Z through (X, Y).
A primitive is an ellipsoid with centre c, unit axes (rows of M) and radii r in the head frame; the
head frame maps to the camera by q = R·p. With G = diag(1/r)·M·Rᵀ and h = diag(1/r)·M·c, the point q
is on the surface when |G·q − h|² = 1, a quadratic in Z for each (X, Y):

    A·Z² + 2·B(X, Y)·Z + C(X, Y) = 0,  front Z = (−B + √D) / A,  D = B² − A·C

B is linear and D quadratic in (X, Y), so both are one small matrix product of per-(image,
primitive) coefficients with the basis [X², XY, Y², X, Y, 1] of the query points, and every pixel
of a batch costs a handful of element-wise passes per primitive.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Ellipsoids", "Quadrics", "quadrics", "point_basis", "front_depth", "nearest", "MISS"]

MISS = -1.0e4  # depth of a ray that hits nothing (far behind every surface)


@dataclass
class Ellipsoids:
    """Ellipsoids in the head frame. centre (B, P, 3); axes (B, P, 3, 3), rows unit axes; radii (B, P, 3)."""

    centre: torch.Tensor
    axes: torch.Tensor
    radii: torch.Tensor


@dataclass
class Quadrics:
    """Per-(image, primitive) coefficients of the ray equation (see the module docstring).

    inv_a (B, P, 1): 1/A; linear (B, P, 3): B over [X, Y, 1]; disc (B, P, 6): D over the basis;
    gram (B, P, 3, 3): GᵀG and offset (B, P, 3): Gᵀh, so the (unnormalised) camera-frame normal at
    q is gram·q − offset.
    """

    inv_a: torch.Tensor
    linear: torch.Tensor
    disc: torch.Tensor
    gram: torch.Tensor
    offset: torch.Tensor


def quadrics(ellipsoids: Ellipsoids, rotation: torch.Tensor) -> Quadrics:
    """Coefficients of the ray equation of each ellipsoid seen through ``rotation`` (B, 3, 3)."""
    scaled_axes = ellipsoids.axes / ellipsoids.radii.unsqueeze(-1)
    g = scaled_axes @ rotation.transpose(-1, -2).unsqueeze(1)          # (B, P, 3, 3)
    h = (scaled_axes @ ellipsoids.centre.unsqueeze(-1)).squeeze(-1)     # (B, P, 3)
    g0, g1, g2 = g[..., 0], g[..., 1], g[..., 2]

    def dot(a, b):
        return (a * b).sum(-1)

    a = dot(g2, g2)
    lx, ly, l1 = dot(g2, g0), dot(g2, g1), -dot(g2, h)
    c = [dot(g0, g0), 2 * dot(g0, g1), dot(g1, g1), -2 * dot(g0, h), -2 * dot(g1, h), dot(h, h) - 1]
    lin_sq = [lx * lx, 2 * lx * ly, ly * ly, 2 * lx * l1, 2 * ly * l1, l1 * l1]
    disc = torch.stack([s - a * ci for s, ci in zip(lin_sq, c)], dim=-1)
    gram = g.transpose(-1, -2) @ g
    offset = (g.transpose(-1, -2) @ h.unsqueeze(-1)).squeeze(-1)
    return Quadrics((1.0 / a).unsqueeze(-1), torch.stack([lx, ly, l1], dim=-1), disc, gram, offset)


def point_basis(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The basis [X², XY, Y², X, Y, 1] of query points: x, y (..., N) -> (..., 6, N)."""
    return torch.stack([x * x, x * y, y * y, x, y, torch.ones_like(x)], dim=-2)


def front_depth(q: Quadrics, basis: torch.Tensor, back: bool = False) -> torch.Tensor:
    """Z of the front (or back) surface of each primitive along each query ray, MISS where none.

    Args:
        q: coefficients for B images and P primitives.
        basis: (6, N) shared query points or (B, 6, N) per image.
    Returns:
        (B, P, N) float32.
    """
    disc = q.disc @ basis                       # (B, P, N)
    linear = q.linear @ basis[..., 3:, :]
    hit = disc > 0
    root = disc.clamp_(min=0).sqrt_()
    depth = (root.neg_() if back else root).sub_(linear).mul_(q.inv_a)
    return depth.masked_fill_(~hit, MISS)


def nearest(depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The visible surface: the largest Z over primitives. depth (B, P, N) -> (Z (B, N), index (B, N) int64)."""
    best = depth[:, 0].clone()
    index = torch.zeros(best.shape, dtype=torch.int64)
    for k in range(1, depth.shape[1]):
        closer = depth[:, k] > best
        best = torch.where(closer, depth[:, k], best)
        index.masked_fill_(closer, k)
    return best, index
