"""The renderer: a batch of identities under their nuisance values -> images, landmarks, visibility.

Orthographic camera; the head turns about a pivot between the eyes and the back of the head, so a
frontal face sits where insightface's 112×112 alignment puts it ("arcface" framing: eyes at about
46% of the height, 31% of the width apart) and a profile stays in the frame. Rotation q = R·(p − pivot)
with R = Rz(roll)·Rx(pitch)·Ry(yaw): positive yaw turns the face towards the image's right, positive
pitch raises the chin, positive roll turns the face clockwise on screen.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from . import face_model as fm
from .background import background
from .raycast import MISS, Quadrics, front_depth, nearest, point_basis, quadrics
from .texture import hue_colour, material_colours, paint_moles, paint_surface

__all__ = ["Framing", "FRAMINGS", "rotation_matrix", "render_batch"]


@dataclass(frozen=True)
class Framing:
    """Where the head sits in the image.

    Attributes:
        scale: pixels per head unit as a fraction of the image side.
        centre_below_eyes: head units from the eyes down to the image centre.
        pivot_z: depth of the rotation pivot (head units in front of the head's centre).
    """

    scale: float
    centre_below_eyes: float
    pivot_z: float


FRAMINGS = {
    "arcface": Framing(scale=0.44, centre_below_eyes=0.09, pivot_z=0.6),   # insightface 112×112 crops
    "landmark": Framing(scale=0.28, centre_below_eyes=0.25, pivot_z=0.4),  # whole head, as FAN's 256 crops
}


def rotation_matrix(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """R = Rz(roll)·Rx(pitch)·Ry(yaw) from angles in degrees (B,) -> (B, 3, 3)."""
    a, b, c = (torch.deg2rad(t) for t in (yaw, pitch, roll))
    one, zero = torch.ones_like(a), torch.zeros_like(a)

    def matrix(rows):
        return torch.stack([torch.stack(row, -1) for row in rows], -2)

    ry = matrix([[a.cos(), zero, a.sin()], [zero, one, zero], [-a.sin(), zero, a.cos()]])
    rx = matrix([[one, zero, zero], [zero, b.cos(), b.sin()], [zero, -b.sin(), b.cos()]])
    rz = matrix([[c.cos(), -c.sin(), zero], [c.sin(), c.cos(), zero], [zero, zero, one]])
    return rz @ rx @ ry


def _hand(nuisance: dict, rotation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An occluding hand: an ellipsoid in front of the lower face, given in the pivot-centred head frame."""
    present = nuisance["occluder"] == 4
    camera_centre = torch.stack([0.5 * nuisance["occluder_x"], 0.35 + 0.35 * nuisance["occluder_y"],
                                 torch.where(present, 1.1, -50.0)], -1)
    centre = (rotation.transpose(-1, -2) @ camera_centre.unsqueeze(-1)).squeeze(-1)
    angle = (nuisance["occluder_hue"] - 0.5) * 2.0
    cos, sin, zero, one = angle.cos(), angle.sin(), torch.zeros_like(angle), torch.ones_like(angle)
    camera_axes = torch.stack([torch.stack([cos, sin, zero], -1), torch.stack([-sin, cos, zero], -1),
                               torch.stack([zero, zero, one], -1)], -2)
    size = nuisance["occluder_size"]
    radii = torch.stack([0.5 * size, 0.75 * size, 0.2 * one], -1)
    return centre, camera_axes @ rotation, radii


def _select(q: Quadrics, k: int) -> Quadrics:
    return Quadrics(*(getattr(q, f)[:, k:k + 1] for f in ("inv_a", "linear", "disc", "gram", "offset")))


def _cast(q: Quadrics, basis: torch.Tensor, plane: torch.Tensor, kept: list[int]
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest surface along each ray among primitives ``kept``, honouring the cut of the hair.

    Returns (Z (B, N), primitive index (B, N) into q's primitives).
    """
    part = Quadrics(*(getattr(q, f)[:, kept] for f in ("inv_a", "linear", "disc", "gram", "offset")))
    depth = front_depth(part, basis)
    if fm.HAIR in kept:
        hair = kept.index(fm.HAIR)
        x, y = basis[..., 3, :], basis[..., 4, :]
        a, b, c, d = (plane[:, i:i + 1] for i in range(4))
        front = depth[:, hair]
        back = front_depth(_select(part, hair), basis, back=True)[:, 0]
        keep_front = a * x + b * y + c * front <= d
        keep_back = (a * x + b * y + c * back <= d) & (back > MISS / 2)
        depth[:, hair] = torch.where(keep_front, front, torch.where(keep_back, back, MISS))
    depth, slot = nearest(depth)
    return depth, torch.tensor(kept)[slot]


def _bounds(head, rotation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-frame bounding boxes of the primitives: low, high (B, P, 2) in x, y."""
    rotated_axes = head.axes @ rotation.transpose(-1, -2).unsqueeze(1)                 # rows R·a_i
    centre = (head.centre.unsqueeze(-2) @ rotation.transpose(-1, -2).unsqueeze(1)).squeeze(-2)[..., :2]
    extent = ((head.radii.unsqueeze(-1) * rotated_axes) ** 2).sum(-2).sqrt()[..., :2]
    return centre - extent, centre + extent


@dataclass
class Rendered:
    """images (B, 3, S, S) float in [0, 1]; landmarks (B, 68, 2) pixels (top-left pixel centre = (0, 0));
    visible (B, 68) bool: on the image, not hidden by the head itself, a hand, worn or image occluders."""

    images: torch.Tensor
    landmarks: torch.Tensor
    visible: torch.Tensor


class _Camera:
    """One image's view: q = R·(p − pivot) in head units; pixel = (q·units + 0.5 + shift)·size − 0.5."""

    def __init__(self, rotation, pivot, units, shift_x, shift_y, size):
        self.rotation, self.pivot, self.size = rotation, pivot, size
        self.units, self.shift = units.view(-1, 1), torch.stack([shift_x, shift_y], -1).view(-1, 1, 2)

    def to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """Head-frame points (B, K, 3) -> camera frame (B, K, 3)."""
        return (points - self.pivot.unsqueeze(1)) @ self.rotation.transpose(-1, -2)

    def to_head(self, x, y, z) -> tuple[torch.Tensor, ...]:
        """Camera-frame coordinates (B, N) each -> head-frame x, y, z (B, N) each."""
        rt = self.rotation.transpose(-1, -2)
        return tuple(rt[:, i, 0:1] * x + rt[:, i, 1:2] * y + rt[:, i, 2:3] * z + self.pivot[:, i:i + 1]
                     for i in range(3))

    def to_pixels(self, camera: torch.Tensor) -> torch.Tensor:
        """Camera-frame points (B, K, 3) -> pixel x, y (B, K, 2)."""
        return (camera[..., :2] * self.units.unsqueeze(-1) + 0.5 + self.shift) * self.size - 0.5

    def window(self, rows: slice, cols: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Camera-frame box (B, 1, 2) low, high of an image tile."""
        low = torch.tensor([cols.start / self.size, rows.start / self.size]) - 0.5
        high = torch.tensor([cols.stop / self.size, rows.stop / self.size]) - 0.5
        scale = self.units.unsqueeze(-1)
        return (low - self.shift) / scale, (high - self.shift) / scale

    def pixel_rays(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Camera x, y of every pixel centre, each (B, S·S) in row-major order."""
        centres = (torch.arange(self.size, dtype=torch.float32) + 0.5) / self.size - 0.5
        batch = self.units.shape[0]
        x = (centres.view(1, 1, -1) - self.shift[..., 0:1]) / self.units.unsqueeze(-1)
        y = (centres.view(1, -1, 1) - self.shift[..., 1:2].transpose(1, 2)) / self.units.unsqueeze(-1)
        return (x.expand(batch, self.size, self.size).reshape(batch, -1),
                y.expand(batch, self.size, self.size).reshape(batch, -1))


_TILES = (8, 2)  # image rows, columns of tiles, each cast with only the primitives that reach it


def _cast_image(q, plane, camera: _Camera, bounds, cam_x, cam_y) -> tuple[torch.Tensor, torch.Tensor]:
    """Cast every pixel, tile by tile; a tile skips primitives whose box misses it in every image
    (the shoulders above the chin, the hair below the ears, an ear on the other side), which halves
    the work of tight crops."""
    low, high = bounds
    size, batch = camera.size, cam_x.shape[0]
    depth = cam_x.new_empty(batch, size, size)
    index = torch.empty(batch, size, size, dtype=torch.int64)
    grid_x, grid_y = cam_x.view(batch, size, size), cam_y.view(batch, size, size)
    edges = [[k * size // n for k in range(n + 1)] for n in _TILES]
    for rows in (slice(a, b) for a, b in zip(edges[0][:-1], edges[0][1:])):
        for cols in (slice(a, b) for a, b in zip(edges[1][:-1], edges[1][1:])):
            window_low, window_high = camera.window(rows, cols)
            seen = ((high > window_low) & (low < window_high)).all(-1).any(0)
            basis = point_basis(grid_x[:, rows, cols].reshape(batch, -1), grid_y[:, rows, cols].reshape(batch, -1))
            tile_depth, tile_index = _cast(q, basis, plane, seen.nonzero().flatten().tolist())
            depth[:, rows, cols] = tile_depth.view(batch, rows.stop - rows.start, -1)
            index[:, rows, cols] = tile_index.view(batch, rows.stop - rows.start, -1)
    return depth.view(batch, -1), index.view(batch, -1)


def render_batch(identity: dict, nuisance: dict, key: torch.Tensor, size: int, framing: Framing) -> Rendered:
    """Render B faces before camera degradations (those are :mod:`.degrade`'s).

    Args:
        identity: :func:`.identity.sample_identities` output; nuisance: factor -> (B,) values;
        key: (B,) int64 image keys (background); size: image side; framing: where the head sits.
    """
    batch = key.numel()
    p = fm.shape_with_expression(identity, nuisance)
    rotation = rotation_matrix(nuisance["yaw"], nuisance["pitch"], nuisance["roll"])
    zero = torch.zeros(batch)
    pivot = torch.stack([zero, p["eye_y"] + framing.centre_below_eyes, zero + framing.pivot_z], -1)

    head = fm.head_primitives(p)
    head = replace(head, centre=head.centre - pivot.unsqueeze(1))
    if bool((nuisance["occluder"] == 4).any()):
        centre, axes, radii = _hand(nuisance, rotation)
        head = replace(head, centre=torch.cat([head.centre, centre.unsqueeze(1)], 1),
                       axes=torch.cat([head.axes, axes.unsqueeze(1)], 1),
                       radii=torch.cat([head.radii, radii.unsqueeze(1)], 1))
    # Each image's misalignment shifts and scales the crop.
    units = framing.scale * nuisance["scale"]                                      # image sides per unit
    camera = _Camera(rotation, pivot, units, nuisance["shift_x"], nuisance["shift_y"], size)
    q = quadrics(head, rotation)
    # The hair's cut plane n·p <= offset in camera coordinates: (R n)·q <= offset − n·pivot.
    normal_head = fm.hair_clip_plane(p)
    plane = torch.cat([(rotation @ normal_head[:, :3].unsqueeze(-1)).squeeze(-1),
                       (normal_head[:, 3] - (normal_head[:, :3] * pivot).sum(-1)).unsqueeze(-1)], -1)
    cam_x, cam_y = camera.pixel_rays()
    depth, index = _cast_image(q, plane, camera, _bounds(head, rotation), cam_x, cam_y)
    hit = depth > MISS / 2

    # Head-frame hit points (for texturing), camera-frame normals (for light).
    x, y, z = camera.to_head(cam_x, cam_y, depth)
    normal = _depth_normals(depth, camera)
    azimuth, elevation = nuisance["light_azimuth"].view(-1, 1), nuisance["light_elevation"].view(-1, 1)
    light = (azimuth.sin() * elevation.cos(), -elevation.sin(), azimuth.cos() * elevation.cos())
    lambert = sum(n_i * l_i for n_i, l_i in zip(normal, light)).clamp_(min=0)
    shade = nuisance["ambient"].view(-1, 1) + nuisance["light_strength"].view(-1, 1) * lambert

    # Colour: materials, painted features, worn occluders, then light.
    units_px = units * size
    params = {**p, "ppu": units_px, "occluder": nuisance["occluder"], "occluder_hue": nuisance["occluder_hue"]}
    colours = material_colours(p, nuisance)
    has_hand = head.centre.shape[1] > len(fm.PRIMITIVES)
    if has_hand:
        hand_colour = hue_colour(0.05 + 0.04 * nuisance["occluder_hue"], 0.45, 0.45 + 0.45 * nuisance["occluder_size"])
        colours = torch.cat([colours, hand_colour.unsqueeze(1)], 1)
    colour = torch.stack(_per_pixel(colours, index), 1)                          # (B, 3, N)
    moles = _moles(p)
    paint_moles(colour, x, y, z, index, moles, camera.to_pixels(camera.to_camera(moles[..., :3])), units_px)
    covered = paint_surface(colour, x, y, z, index, params)
    if has_hand:
        covered = torch.maximum(covered, (index == len(fm.PRIMITIVES)).float())
    cast = nuisance["colour_cast"].view(-1, 1, 1) * torch.tensor([1.0, 0.0, -1.0]).view(1, 3, 1)
    colour.mul_(shade.unsqueeze(1)).mul_(1 + cast)
    colour = torch.where(hit.unsqueeze(1), colour,
                         background(key, nuisance["background_hue"], nuisance["clutter"], size))
    covered = covered * hit
    colour, covered = _block(colour, covered, nuisance, size)
    images = colour.clamp_(0, 1).view(batch, 3, size, size)

    landmarks, visible = _landmarks(p, q, plane, camera, covered)
    return Rendered(images, landmarks, visible)


def _depth_normals(depth: torch.Tensor, camera: _Camera) -> tuple[torch.Tensor, ...]:
    """Unit camera-frame normals (-dZ/dX, -dZ/dY, 1)/norm from the depth map, each (B, N).

    Each slope is the one-sided difference of smaller magnitude, so a pixel next to a silhouette or
    to another primitive takes the slope of its own surface. Finite differences of the exact depth
    cost a fraction of looking up each pixel's primitive for an analytic normal.
    """
    batch, size = depth.shape[0], camera.size
    grid = depth.view(batch, 1, size, size)
    per_pixel = (camera.units * size).view(batch, 1, 1, 1)          # pixels per camera unit

    def slope(diff: torch.Tensor, pad: tuple[int, int, int, int], other: tuple[int, int, int, int]):
        forward, backward = F.pad(diff, pad, mode="replicate"), F.pad(diff, other, mode="replicate")
        return torch.where(forward.abs() < backward.abs(), forward, backward).mul_(per_pixel)

    dx = slope(grid.diff(dim=3), (0, 1, 0, 0), (1, 0, 0, 0))
    dy = slope(grid.diff(dim=2), (0, 0, 0, 1), (0, 0, 1, 0))
    norm = (dx * dx + dy * dy).add_(1).rsqrt_()
    return (dx.mul_(norm).neg_().view(batch, -1), dy.mul_(norm).neg_().view(batch, -1), norm.view(batch, -1))


def _per_pixel(table: torch.Tensor, index: torch.Tensor) -> list[torch.Tensor]:
    """Look up each pixel's primitive in a (B, P, K) table: K tensors (B, N)."""
    return [torch.gather(column, 1, index) for column in table.unbind(-1)]


def _moles(p: dict) -> torch.Tensor:
    """Moles lifted onto the skin: (B, M, 4) = x, y, z, radius (0 when absent or off the skin)."""
    moles = p["moles"]
    z = fm.lift(fm._skin_primitives(p), moles[..., 0], moles[..., 1])
    radius = torch.where(z.isnan(), 0.0, moles[..., 2] * moles[..., 3])
    return torch.stack([moles[..., 0], moles[..., 1], z.nan_to_num(0.0), radius], -1)


def _block(colour, covered, nuisance, size):
    """An image-space block occluder (code 5): a striped rectangle over the face, on the images that have one."""
    images = (nuisance["occluder"] == 5).nonzero().flatten()
    if images.numel() == 0:
        return colour, covered
    pixels = torch.arange(size, dtype=torch.float32) + 0.5
    values = {k: nuisance[k][images] for k in ("occluder_size", "occluder_x", "occluder_y", "occluder_hue")}
    half = 0.22 * values["occluder_size"] * size
    cx = (0.5 + 0.25 * values["occluder_x"]) * size
    cy = (0.55 + 0.25 * values["occluder_y"]) * size
    cols = (torch.minimum(pixels - (cx - half).view(-1, 1), (cx + half).view(-1, 1) - pixels) + 0.5).clamp(0, 1)
    rows = (torch.minimum(pixels - (cy - half).view(-1, 1), (cy + half).view(-1, 1) - pixels) + 0.5).clamp(0, 1)
    mask = (rows.unsqueeze(2) * cols.unsqueeze(1)).flatten(1)
    stripes = (0.85 + 0.15 * torch.sin(pixels * 0.8)).view(size, 1).expand(size, size).reshape(1, 1, -1)
    paint = hue_colour(values["occluder_hue"], 0.6, 0.7).unsqueeze(-1) * stripes
    colour[images] = torch.lerp(colour[images], paint, mask.unsqueeze(1))
    covered[images] = torch.maximum(covered[images], mask)
    return colour, covered


def _landmarks(p, q, plane, camera: _Camera, covered):
    """Pixel positions of the 68 landmarks and their visibility (see :class:`Rendered`)."""
    points = fm.landmarks_3d(p)                                             # (B, 68, 3), NaN z off the skin
    off_skin = points[..., 2].isnan()
    position = camera.to_camera(points.nan_to_num(0.0))
    pixels = camera.to_pixels(position)
    front, index = _cast(q, point_basis(position[..., 0], position[..., 1]), plane, list(range(q.inv_a.shape[1])))
    # On the front-most surface, and facing the camera: a point on the silhouette (a grazing view)
    # is not a visible landmark however the rounding of its depth falls.
    local = torch.stack(_per_pixel(torch.cat([q.gram.flatten(2), q.offset], -1), index), -1)  # (B, 68, 12)
    normal = (local[..., :9].unflatten(-1, (3, 3)) @ position.unsqueeze(-1)).squeeze(-1) - local[..., 9:]
    facing = normal[..., 2] > 0.05 * normal.norm(dim=-1)
    on_surface = position[..., 2] >= front - 2e-3
    size = camera.size
    inside = ((pixels > -0.5) & (pixels < size - 0.5)).all(-1)
    u, v = pixels.unbind(-1)
    pixel = (v.round().clamp(0, size - 1) * size + u.round().clamp(0, size - 1)).long()
    free = covered.gather(1, pixel) < 0.5
    return pixels, on_surface & facing & inside & free & ~off_skin
