"""Nuisance factors of the synthetic world: one knob per factor and a global difficulty.

A knob is the largest amplitude of its factor; ``difficulty`` in [0, 1] scales every knob at once
(0: frontal, neutral, evenly lit, clean; 1: up to unrecognisable). An image's amplitude of a factor
is ``knob * difficulty * u**2`` with u uniform, so most images are mild and a few reach the knob, as
in real collections. Signed factors (angles) get a random sign. Camera degradations (blur, motion
blur, low resolution, noise, JPEG) are absent from half the images and ``knob * difficulty * w**2``
with w uniform in the other half: most photographs are not degraded at all. Any factor can instead be fixed to
exact per-image values (``overrides``), which is how protocols ask for, e.g., profile views.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from .random import make_key, uniform

__all__ = ["Nuisance", "OCCLUDERS", "FACTORS", "sample_nuisance", "video_nuisance"]

# Occluder codes, the values of the "occluder" factor.
OCCLUDERS = {"none": 0, "glasses": 1, "sunglasses": 2, "mask": 3, "hand": 4, "block": 5}


@dataclass(frozen=True)
class Nuisance:
    """Knobs of the nuisance factors (largest amplitude of each) and the global difficulty.

    Attributes:
        difficulty: scales every knob, in [0, 1].
        yaw, pitch, roll: largest head rotation in degrees (yaw up to 90 shows a profile).
        expression: largest expression intensity in [0, 1] (mouth opening, smile, brows, eye closure).
        illumination: largest strength of directional light and colour cast, in [0, 1].
        occlusion: probability scale of an occluder (glasses, sunglasses, mask, hand, block).
        blur: largest gaussian blur sigma, in pixels of a 112-pixel image (scaled with the size).
        motion_blur: largest motion-blur length, in pixels of a 112-pixel image.
        low_resolution: largest loss of resolution in [0, 1): the image goes down to
            size·(1 − 0.9·v) pixels and back.
        noise: largest gaussian noise sigma, as a fraction of the full range.
        jpeg: largest JPEG degradation in [0, 1]: quality 95 − 85·v (100, no JPEG, when v = 0).
        clutter: amount of background clutter in [0, 1].
        misalignment: largest crop shift (fraction of the image) and scale change of the face.
    """

    difficulty: float = 0.3
    yaw: float = 90.0
    pitch: float = 30.0
    roll: float = 25.0
    expression: float = 1.0
    illumination: float = 1.0
    occlusion: float = 0.6
    blur: float = 3.0
    motion_blur: float = 12.0
    low_resolution: float = 0.9
    noise: float = 0.08
    jpeg: float = 1.0
    clutter: float = 1.0
    misalignment: float = 0.06

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"Nuisance.{field.name}: expected a finite number >= 0, got {value!r}")
        if self.difficulty > 1:
            raise ValueError(f"Nuisance.difficulty: expected a value in [0, 1], got {self.difficulty}")
        if self.low_resolution >= 1:
            raise ValueError(f"Nuisance.low_resolution: expected a value in [0, 1), got {self.low_resolution}")

    def replace(self, **changes) -> "Nuisance":
        """A copy with some knobs changed."""
        return dataclasses.replace(self, **changes)


# The per-image values a rendered image reports (and that overrides may fix), in a stable order.
FACTORS = ("yaw", "pitch", "roll", "mouth_open", "smile", "brow_raise", "eye_close", "gaze_x", "gaze_y",
           "light_azimuth", "light_elevation", "light_strength", "ambient", "colour_cast",
           "occluder", "occluder_x", "occluder_y", "occluder_size", "occluder_hue",
           "blur", "motion_blur", "motion_angle", "resolution", "noise", "jpeg_quality",
           "clutter", "shift_x", "shift_y", "scale", "background_hue", "clothing_hue")


def _amplitude(u: torch.Tensor, knob: float, difficulty: float) -> torch.Tensor:
    return knob * difficulty * u * u


def _sparse(u: torch.Tensor, knob: float, difficulty: float) -> torch.Tensor:
    """Zero for u < 1/2, else the amplitude of 2u − 1."""
    return _amplitude((2 * u - 1).clamp(min=0), knob, difficulty)


def _signed(u: torch.Tensor, sign: torch.Tensor, knob: float, difficulty: float) -> torch.Tensor:
    return torch.where(sign < 0.5, -1.0, 1.0) * _amplitude(u, knob, difficulty)


def _factors(u: torch.Tensor, knobs: Nuisance, size: int) -> dict[str, torch.Tensor]:
    """Turn uniforms (B, 40) into factor values (each (B,) float32)."""
    d = knobs.difficulty
    scale_px = size / 112.0
    occluded = u[:, 14] < min(1.0, knobs.occlusion * d)
    low_res = _sparse(u[:, 22], knobs.low_resolution, d)
    jpeg = _sparse(u[:, 24], knobs.jpeg, d)
    return {
        "yaw": _signed(u[:, 0], u[:, 30], knobs.yaw, d),
        "pitch": _signed(u[:, 1], u[:, 31], knobs.pitch, d),
        "roll": _signed(u[:, 2], u[:, 32], knobs.roll, d),
        "mouth_open": _amplitude(u[:, 3], knobs.expression, d).clamp(max=1),
        "smile": _signed(u[:, 4], u[:, 33] * 1.6, knobs.expression, d).clamp(-1, 1),  # smiles outnumber frowns
        "brow_raise": _signed(u[:, 5], u[:, 34], knobs.expression, d).clamp(-1, 1),
        "eye_close": _amplitude(u[:, 6], knobs.expression, d).clamp(max=1),
        "gaze_x": (u[:, 7] - 0.5) * 0.06,
        "gaze_y": (u[:, 8] - 0.5) * 0.03,
        "light_azimuth": (u[:, 9] - 0.5) * math.pi * min(1.0, 0.3 + knobs.illumination * d),
        "light_elevation": (u[:, 10] - 0.3) * 0.8,
        "light_strength": 0.25 + 0.55 * min(1.0, knobs.illumination * d) * u[:, 11],
        "ambient": 0.75 - 0.45 * min(1.0, knobs.illumination * d) * u[:, 12],
        "colour_cast": (u[:, 13] - 0.5) * 0.3 * min(1.0, knobs.illumination * d),
        "occluder": torch.where(occluded, 1 + (u[:, 15] * 5).floor().clamp(max=4), torch.zeros_like(u[:, 15])),
        "occluder_x": u[:, 16] * 2 - 1,
        "occluder_y": u[:, 17] * 2 - 1,
        "occluder_size": 0.5 + 0.5 * u[:, 18],
        "occluder_hue": u[:, 19],
        "blur": _sparse(u[:, 20], knobs.blur, d) * scale_px,
        "motion_blur": _sparse(u[:, 21], knobs.motion_blur, d) * scale_px,
        "motion_angle": u[:, 35] * 180.0,  # degrees
        "resolution": (size * (1 - low_res)).round(),
        "noise": _sparse(u[:, 23], knobs.noise, d),
        "jpeg_quality": torch.where(jpeg > 0, (95 - 85 * jpeg).round(), torch.full_like(jpeg, 100.0)),
        "clutter": min(1.0, knobs.clutter * (0.3 + 0.7 * d)) * u[:, 25],
        "shift_x": (u[:, 26] * 2 - 1) * knobs.misalignment * d,
        "shift_y": (u[:, 27] * 2 - 1) * knobs.misalignment * d,
        "scale": 1 + (u[:, 28] * 2 - 1) * knobs.misalignment * d,
        "background_hue": u[:, 29],
        "clothing_hue": u[:, 36],
    }


def _apply_overrides(values: dict[str, torch.Tensor], overrides: dict, batch: int) -> dict[str, torch.Tensor]:
    for name, value in overrides.items():
        if name not in values:
            raise ValueError(f"override {name!r}: not a nuisance factor; expected one of {', '.join(FACTORS)}")
        if isinstance(value, str):
            if name != "occluder" or value not in OCCLUDERS:
                raise ValueError(f"override {name}={value!r}: expected a number or, for occluder, one of "
                                 f"{', '.join(OCCLUDERS)}")
            value = OCCLUDERS[value]
        value = torch.as_tensor(value, dtype=torch.float32)
        if value.dim() > 1 or (value.dim() == 1 and value.numel() != batch):
            raise ValueError(f"override {name}: expected a number or a tensor of {batch} values, got shape "
                             f"{tuple(value.shape)}")
        if not torch.isfinite(value).all():
            raise ValueError(f"override {name}: values must be finite")
        values[name] = value.expand(batch).clone()
    if ((values["occluder"] < 0) | (values["occluder"] >= len(OCCLUDERS)) | (values["occluder"] % 1 != 0)).any():
        raise ValueError(f"override occluder: expected integer codes 0..{len(OCCLUDERS) - 1} ({OCCLUDERS})")
    return values


def sample_nuisance(key: torch.Tensor, knobs: Nuisance, size: int, overrides: dict | None = None
                    ) -> dict[str, torch.Tensor]:
    """Nuisance values of a batch of still images.

    Args:
        key: (B,) int64 image keys (a pure function of world seed, identity and sample).
        knobs: the knobs.
        size: image side in pixels (pixel-valued factors scale with it).
        overrides: factor -> exact value (number, or (B,) tensor; "occluder" also takes a name).
    Returns:
        factor -> float32 (B,) tensor, for every name in :data:`FACTORS`.
    """
    u = uniform(key, "nuisance", 40).to(torch.float32)
    return _apply_overrides(_factors(u, knobs, size), overrides or {}, key.numel())


# Factors that drift smoothly during a video; the others are drawn once per video.
_DRIFTING = ("yaw", "pitch", "roll", "mouth_open", "smile", "brow_raise", "eye_close", "gaze_x", "gaze_y",
             "blur", "motion_blur", "motion_angle", "shift_x", "shift_y", "light_azimuth")
_BOUNDED = {"mouth_open": (0, 1), "eye_close": (0, 1), "smile": (-1, 1), "brow_raise": (-1, 1),
            "blur": (0, math.inf), "motion_blur": (0, math.inf)}


def video_nuisance(video_key: torch.Tensor, num_frames: int, knobs: Nuisance, size: int,
                   overrides: dict | None = None) -> dict[str, torch.Tensor]:
    """Nuisance values of the frames of one video: smooth trajectories through random keyframes.

    Each drifting factor follows a cosine interpolation between keyframe values drawn as for stills,
    one keyframe every 12 frames, so pose, expression and blur change smoothly while identity,
    background, light colour and occluder stay. Blinks are short closures of the eyes.

    Args:
        video_key: () int64 key of the video.
        num_frames: N >= 1.
    Returns:
        factor -> float32 (N,) tensor.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames: expected >= 1, got {num_frames}")
    num_keys = num_frames // 12 + 2
    keys = make_key(video_key, torch.arange(num_keys))
    per_key = _factors(uniform(keys, "nuisance", 40).to(torch.float32), knobs, size)
    constant = _factors(uniform(video_key.view(1), "nuisance", 40).to(torch.float32), knobs, size)
    position = torch.arange(num_frames, dtype=torch.float32) / 12.0
    low = position.floor().long()
    t = 0.5 - 0.5 * torch.cos((position - low) * math.pi)
    values = {}
    for name, value in constant.items():
        if name in _DRIFTING:
            lo, hi = _BOUNDED.get(name, (-math.inf, math.inf))
            # The drift stays near the video's own level: half its keyframe spread, half its base.
            base = value.expand(num_frames)
            drift = per_key[name][low] * (1 - t) + per_key[name][low + 1] * t
            values[name] = (0.5 * base + 0.5 * drift).clamp(lo, hi)
        else:
            values[name] = value.expand(num_frames).clone()
    blink = uniform(make_key(video_key, torch.arange(num_frames)), "nuisance.blink", 1)[:, 0] < 0.04
    values["eye_close"] = torch.where(blink, torch.ones(num_frames), values["eye_close"])
    return _apply_overrides(values, overrides or {}, num_frames)
