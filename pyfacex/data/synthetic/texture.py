"""Surface colour of the rendered head: materials, facial features, identity marks, worn occluders.

Everything is evaluated at each pixel's hit point (x, y, z) in the head frame, so features foreshorten
and hide with the surface they are painted on. Features use the curves of :mod:`.face_model` that
also place the landmarks. Edges are anti-aliased: a feature's coverage is clamp(0.5 + d·ppu, 0, 1)
for a signed distance d (head units, positive inside) and ppu pixels per head unit.

Features are painted on :class:`_Region` s, flat lists of the pixels of a band of the face (the
eyes, the mouth, the skin), so each feature costs work in proportion to where it can appear.
"""
from __future__ import annotations

import torch

from .face_model import FACE_PRIMITIVES, brow_curve, eye_curves, mouth_curves

__all__ = ["hue_colour", "material_colours", "paint_surface", "paint_moles"]

_SCLERA = torch.tensor([0.93, 0.91, 0.87])
_PUPIL = torch.tensor([0.03, 0.02, 0.02])
_MOUTH = torch.tensor([0.22, 0.07, 0.07])
_TEETH = torch.tensor([0.93, 0.91, 0.84])
_FRAME = torch.tensor([0.08, 0.07, 0.07])
_LENS = torch.tensor([0.05, 0.06, 0.08])
_MASKS = torch.tensor([[0.62, 0.78, 0.90], [0.95, 0.95, 0.95], [0.08, 0.08, 0.09], [0.55, 0.60, 0.65]])
_BLUSH = torch.tensor([1.05, 0.75, 0.72])
_SCAR = torch.tensor([1.12, 0.9, 0.9])
_FRECKLE = torch.tensor([0.72, 0.55, 0.45])
GLASSES, SUNGLASSES, MASK = 1, 2, 3  # occluder codes painted here (see nuisance.OCCLUDERS)


def hue_colour(hue: torch.Tensor, saturation=0.5, value=0.6) -> torch.Tensor:
    """HSV to RGB: hue (B,) in [0, 1), saturation and value numbers or (B,) -> (B, 3)."""
    k = torch.tensor([5.0, 3.0, 1.0])
    h6 = (torch.as_tensor(hue).unsqueeze(-1) * 6 + k) % 6
    saturation, value = (torch.as_tensor(t).unsqueeze(-1) for t in (saturation, value))
    return value - value * saturation * torch.minimum(h6, 4 - h6).clamp(0, 1)


def material_colours(p: dict, nuisance: dict) -> torch.Tensor:
    """Base colour of each primitive, (B, 8, 3), in the order of face_model.PRIMITIVES."""
    skin = p["skin"]
    clothes = hue_colour(nuisance["clothing_hue"], 0.45, 0.25 + 0.5 * nuisance["occluder_size"])
    return torch.stack([skin, skin, skin * 0.97, skin * 0.92, skin * 0.92, skin * 0.86, clothes, p["hair"]], 1)


class _Region:
    """The pixels of a batch selected by a mask, as flat (M,) lists, with each one's parameters.

    ``region[name]`` is parameter ``name`` per pixel: (M,) for a (B,) value, (3, M) for a colour,
    (M, K, 4) for the moles. Painting lerps the region's own colour copy; :meth:`write` puts it back.
    """

    def __init__(self, mask, x, y, z, colour, params):
        # Flat indices: torch.take/put_ on them are much faster than indexing with (b, n) pairs.
        self.flat = mask.view(-1).nonzero().squeeze(1)
        pixels = mask.shape[1]
        self.b = torch.div(self.flat, pixels, rounding_mode="floor")
        channel = torch.arange(3).view(3, 1) * pixels
        self.flat_rgb = self.flat.unsqueeze(0) + 2 * pixels * self.b.unsqueeze(0) + channel   # into (B, 3, N)
        self.x, self.y, self.z = x.take(self.flat), y.take(self.flat), z.take(self.flat)
        self.colour = colour.take(self.flat_rgb)                                              # (3, M)
        self._params, self._cache = params, {}

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._cache:
            value = self._params[name].index_select(0, self.b)
            self._cache[name] = value.t() if value.dim() == 2 and value.shape[1] == 3 else value
        return self._cache[name]

    def paint(self, alpha: torch.Tensor, paint: torch.Tensor) -> None:
        self.colour.lerp_(paint.view(3, 1) if paint.dim() == 1 else paint, alpha.unsqueeze(0))

    def write(self, colour: torch.Tensor) -> None:
        colour.put_(self.flat_rgb, self.colour)

    def scatter(self, target: torch.Tensor, values: torch.Tensor) -> None:
        """target (B, N) <- max(target, values) at the region's pixels."""
        target.put_(self.flat, torch.maximum(target.take(self.flat), values))


def _coverage(distance: torch.Tensor, ppu: torch.Tensor) -> torch.Tensor:
    return distance.mul_(ppu).add_(0.5).clamp_(0, 1)


def _cell_hash(cx: torch.Tensor, cy: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash of grid cells (int64 arithmetic, identical on every machine)."""
    h = (cx * 73856093) ^ (cy * 19349663) ^ seed
    h = (h ^ (h >> 13)) * 1274126177 & 0xFFFFFFFF
    return h ^ (h >> 16)


def paint_surface(colour, x, y, z, index, params) -> torch.Tensor:
    """Paint identity marks (but moles: :func:`paint_moles`), facial features and worn occluders onto
    the face skin, in place.

    Args:
        colour: (B, 3, N) base colours. x, y, z: (B, N) head-frame hit points. index: (B, N) primitive.
        params: shape with expression as (B,) values and (B, 3) colours, plus "ppu" (B,) pixels per
            head unit and "occluder", "occluder_hue" (B,).
    Returns:
        (B, N) coverage of worn occluders (glasses frames and dark lenses, masks).
    """
    skin = (index < FACE_PRIMITIVES) & (z > 0.05)
    covered = torch.zeros_like(x)
    p = params

    def band(low, high, half_width=None, of=None):
        """skin with low < y < high and |x| < half_width ((B,) values), for the images in ``of``."""
        mask = skin & (y > low.unsqueeze(1)) & (y < high.unsqueeze(1))
        if half_width is not None:
            mask &= x.abs() < half_width.unsqueeze(1)
        return mask if of is None else mask & of.unsqueeze(1)

    nose = p["nose_tip_y"]
    blush = band(nose - 0.28, nose + 0.18, torch.full_like(nose, 0.68)) & ((x.abs() - 0.45).abs() < 0.23)
    region = _Region(blush | band(nose - 0.32, nose + 0.08, of=p["freckles"] > 0), x, y, z, colour, p)
    _paint_cheeks(region)
    region.write(colour)
    scar = p["scar"]
    if bool((scar[:, 3] > 0).any()):
        # The scar's box: it starts at (x0, y0) and runs `length` along its angle.
        x0, y0, angle, length = scar.unbind(-1)
        cx, cy = x0 + 0.5 * length * angle.cos(), y0 + 0.5 * length * angle.sin()
        near = ((x - cx.unsqueeze(1)).abs() < 0.5 * length.unsqueeze(1) + 0.02) & \
               ((y - cy.unsqueeze(1)).abs() < 0.5 * length.unsqueeze(1) + 0.02)
        region = _Region(skin & near, x, y, z, colour, p)
        _paint_scar(region)
        region.write(colour)

    # Brows, eyes and glasses (rims reach eye_w + 0.09 beyond the eye centre).
    region = _Region(band(p["brow_y"] - p["brow_arch"] - 0.2, p["eye_y"] + 0.16, p["eye_x"] + 0.26),
                     x, y, z, colour, p)
    _paint_eyes(region)
    glasses = (region["occluder"] == GLASSES) | (region["occluder"] == SUNGLASSES)
    if bool(glasses.any()):
        region.scatter(covered, _paint_glasses(region, glasses))
    region.write(colour)

    # Nostrils and lips; the whole lower face for beards and masks.
    lips = band(nose - 0.08, p["mouth_y"] + p["lip_lower"] + 0.5 * p["mouth_open"] + 0.05, p["mouth_w"] + 0.02)
    masked = p["occluder"] == MASK
    region = _Region(lips | band(nose - 0.08, nose + 10, of=(p["beard"] > 0) | masked), x, y, z, colour, p)
    _paint_mouth(region)
    mask = region["occluder"] == MASK
    if bool(mask.any()):
        region.scatter(covered, _paint_mask(region, mask))
    region.write(colour)
    return covered


def _paint_cheeks(r: _Region) -> None:
    """Blush and the identity's freckle pattern (a hashed grid: which cells hold a freckle and where)."""
    x, y, ppu = r.x, r.y, r["ppu"]
    cheek = (x.abs() - 0.45) ** 2 + (y - r["nose_tip_y"] + 0.05) ** 2
    r.paint((1 - cheek / 0.05).clamp_(min=0) * r["blush"], r["skin"] * _BLUSH.view(3, 1))
    if bool((r["freckles"] > 0).any()):
        cells = 26.0
        cx, cy = (x * cells).floor(), (y * cells).floor()
        h = _cell_hash(cx.long(), cy.long(), r["freckle_seed"].long())
        present = ((h & 1023).float() / 1024) < r["freckles"]
        fx = cx + 0.25 + 0.5 * ((h >> 10) & 255).float() / 256
        fy = cy + 0.25 + 0.5 * ((h >> 18) & 255).float() / 256
        d2 = (x * cells - fx) ** 2 + (y * cells - fy) ** 2
        band = (y - r["nose_tip_y"] + 0.12).abs() < 0.2
        r.paint(_coverage((0.09 - d2) / (0.6 * cells), ppu).mul_(present & band) * 0.6, r["skin"] * _FRECKLE.view(3, 1))


def _paint_scar(r: _Region) -> None:
    """The identity's scar: a pale line segment."""
    x, y, scar = r.x, r.y, r["scar"]
    length = scar[:, 3]
    cos, sin = torch.cos(scar[:, 2]), torch.sin(scar[:, 2])
    t = torch.minimum(((x - scar[:, 0]) * cos + (y - scar[:, 1]) * sin).clamp_(min=0), length)
    d = ((x - scar[:, 0] - t * cos) ** 2 + (y - scar[:, 1] - t * sin) ** 2).sqrt_()
    r.paint(_coverage(0.011 - d, r["ppu"]).mul_(length > 0), r["skin"] * _SCAR.view(3, 1))


def paint_moles(colour, x, y, z, index, moles, centres, ppu) -> None:
    """Paint moles, in place: discs on the 3D surface (|p − m| < radius), so a mole shows only where its
    part of the head faces the camera; evaluated on a pixel window round each mole's projection.

    Args:
        colour: (B, 3, N); x, y, z: (B, N) head-frame hit points; index: (B, N) primitive.
        moles: (B, K, 4) head-frame x, y, z, radius (0 = none); centres: (B, K, 2) pixel x, y;
        ppu: (B,) pixels per head unit.
    """
    batch, _, pixels = colour.shape
    size = round(pixels ** 0.5)
    if moles.numel() == 0 or not bool((moles[..., 3] > 0).any()):
        return
    reach = int(torch.ceil((moles[..., 3].amax(1) * ppu).amax())) + 1
    offsets = torch.arange(-reach, reach + 1)
    cols = centres[..., 0].round().long()[..., None, None] + offsets.view(1, 1, 1, -1)
    rows = centres[..., 1].round().long()[..., None, None] + offsets.view(1, 1, -1, 1)
    inside = (cols >= 0) & (cols < size) & (rows >= 0) & (rows < size)
    image = torch.arange(batch).view(batch, 1, 1, 1)
    flat = image * pixels + rows.clamp(0, size - 1) * size + cols.clamp(0, size - 1)     # (B, K, W, W)
    mole = moles[:, :, None, None, :]
    d2 = (x.take(flat) - mole[..., 0]) ** 2 + (y.take(flat) - mole[..., 1]) ** 2 + (z.take(flat) - mole[..., 2]) ** 2
    radius = mole[..., 3]
    alpha = _coverage((radius * radius - d2) / (2 * radius + 1e-6), ppu.view(batch, 1, 1, 1))
    alpha = alpha * inside * (index.take(flat) < FACE_PRIMITIVES) * (radius > 0)
    flat_rgb = (flat + 2 * pixels * image).unsqueeze(0) + (torch.arange(3) * pixels).view(3, 1, 1, 1, 1)
    paint = colour.new_tensor(0.45) * colour.take(flat_rgb)
    colour.put_(flat_rgb, torch.lerp(colour.take(flat_rgb), paint, alpha.unsqueeze(0)))


def _paint_eyes(r: _Region) -> None:
    """Brows (a tapering band), eyes: sclera between the lids, iris and pupil cut by the lids, lashes."""
    x, y, ppu = r.x, r.y, r["ppu"]
    ax = x.abs()
    dx = ax - (r["eye_x"] + 0.01)
    thickness = r["brow_t"] * (1 - 0.4 * dx / r["brow_w"])
    brow = torch.minimum(thickness - (y - brow_curve(r, dx)).abs(), r["brow_w"] - dx.abs())
    r.paint(_coverage(brow, ppu) * 0.9, r["hair"] * 0.7)
    dx = ax - r["eye_x"]
    upper, lower = eye_curves(r, dx)
    eye = _coverage(torch.minimum(torch.minimum(y - upper, lower - y), 0.5 * (r["eye_w"] - dx.abs())), ppu)
    r.paint(eye, _SCLERA)
    r2 = ((x - r["gaze_x"]).abs() - r["eye_x"]) ** 2 + (y - r["eye_y"] - r["gaze_y"]) ** 2
    radius = r["iris_r"]
    r.paint(_coverage((radius * radius - r2) / (2 * radius), ppu).mul_(eye), r["eye"])
    pupil = 0.42 * radius
    r.paint(_coverage((pupil * pupil - r2) / (2 * pupil), ppu).mul_(eye), _PUPIL)
    r.paint(_coverage(torch.minimum(0.012 - (y - upper).abs(), r["eye_w"] - dx.abs()), ppu), _PUPIL)


def _paint_mouth(r: _Region) -> None:
    """Beard, nostrils, lips, the open mouth and the upper teeth."""
    x, y, ppu = r.x, r.y, r["ppu"]
    r.paint((y > r["nose_tip_y"] + 0.1) * r["beard"] * 0.7, r["hair"])
    nostril = 1 - ((x.abs() - 0.5 * r["nostril_w"]) / 0.045) ** 2 - ((y - r["nose_tip_y"] - 0.06) / 0.022) ** 2
    r.paint(_coverage(nostril * 0.02, ppu), r["skin"] * 0.3)
    q = x / r["mouth_w"]
    outer_up, inner_up, inner_low, outer_low = mouth_curves(r, q)
    edge = (1 - q.abs()) * r["mouth_w"]
    r.paint(_coverage(torch.minimum(torch.minimum(y - outer_up, outer_low - y), edge), ppu), r["lip"])
    opening = _coverage(torch.minimum(torch.minimum(y - inner_up, inner_low - y), edge), ppu)
    r.paint(opening, _MOUTH)
    r.paint(_coverage(inner_up + 0.4 * (inner_low - inner_up) - y, ppu).mul_(opening), _TEETH)


def _paint_glasses(r: _Region, worn: torch.Tensor) -> torch.Tensor:
    """Glasses (clear or dark lenses, rims round the eyes, a bridge); returns what hides the face."""
    x, y, ppu = r.x, r.y, r["ppu"]
    dx = x.abs() - r["eye_x"]
    rho = (dx / (r["eye_w"] + 0.07)) ** 2 + ((y - r["eye_y"] + 0.01) / (r["eye_hu"] + 0.08)) ** 2
    rim = _coverage(0.018 - (rho.sqrt() - 1).abs() * 0.12, ppu)
    bridge = _coverage(torch.minimum(0.012 - (y - r["eye_y"] + 0.05).abs(), r["eye_x"] - r["eye_w"] - x.abs()), ppu)
    lens = _coverage((1 - rho) * 0.05, ppu) * worn
    dark = (r["occluder"] == SUNGLASSES).float()
    r.paint(lens * (0.15 + 0.8 * dark), _LENS)
    frame = torch.maximum(rim, bridge) * worn
    r.paint(frame, _FRAME)
    return torch.maximum(frame, lens * dark)


def _paint_mask(r: _Region, worn: torch.Tensor) -> torch.Tensor:
    """A face mask over nose tip, mouth and chin; returns its coverage."""
    top = r["nose_tip_y"] - 0.04 + 0.12 * r.x * r.x
    alpha = _coverage(torch.minimum(r.y - top, 0.85 - r.x.abs()), r["ppu"]) * worn
    choice = (r["occluder_hue"] * len(_MASKS)).long().clamp(max=len(_MASKS) - 1)
    r.paint(alpha, _MASKS[choice].t())
    return alpha
