"""The synthetic face world: identities, still images and videos, deterministic by seed."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from .degrade import degrade
from .identity import MAX_LOCAL_VARIETY, sample_identities
from .nuisance import FACTORS, Nuisance, sample_nuisance, video_nuisance
from .random import make_key
from .render import FRAMINGS, Framing, render_batch

__all__ = ["SyntheticFaceWorld", "FaceBatch", "TEST_IDENTITY_OFFSET"]

# Test identities live far above any train id, so the splits never share an identity.
TEST_IDENTITY_OFFSET = 1 << 40
_STILL, _VIDEO = 0, 1


def _check_fraction(name: str, value, high: float) -> float:
    """``value`` as a float in [0, high], else TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number in [0, {high}], got {type(value).__name__} {value!r}")
    if not 0.0 <= value <= high:
        raise ValueError(f"{name}: expected a number in [0, {high}], got {value!r}")
    return float(value)


@dataclass
class FaceBatch:
    """Rendered faces with their ground truth.

    Attributes:
        images: (B, 3, S, S) uint8 RGB.
        landmarks: (B, 68, 2) float32 pixel x, y in iBUG order; the top-left pixel's centre is (0, 0).
        visible: (B, 68) bool: on the image and not hidden by the head itself or an occluder.
        pose: (B, 3) float32 yaw, pitch, roll in degrees (see :mod:`.render` for the signs).
        nuisance: factor -> (B,) float32 values used (:data:`.nuisance.FACTORS`).
        identity: (B,) int64. sample: (B,) int64 (the frame index for a video).
    """

    images: torch.Tensor
    landmarks: torch.Tensor
    visible: torch.Tensor
    pose: torch.Tensor
    nuisance: dict = field(repr=False)
    identity: torch.Tensor = None
    sample: torch.Tensor = None

    def __len__(self) -> int:
        return self.images.shape[0]

    @staticmethod
    def cat(batches: list["FaceBatch"]) -> "FaceBatch":
        """Concatenate batches along the batch dimension."""
        tensors = {f.name: torch.cat([getattr(b, f.name) for b in batches])
                   for f in dataclasses.fields(FaceBatch) if f.name != "nuisance"}
        nuisance = {k: torch.cat([b.nuisance[k] for b in batches]) for k in batches[0].nuisance}
        return FaceBatch(nuisance=nuisance, **tensors)


class SyntheticFaceWorld:
    """A procedural world of faces for tests, demos and benchmarks with no download.

    Every image is a pure function of (seed, identity, sample) and the knobs, whatever batch, worker
    or process renders it. Identity fixes head and face shape, feature placement and shape, skin, eye
    and hair colour, and local marks (moles, a scar, freckles) that only some regions show; nuisance
    factors vary per image (see :class:`.nuisance.Nuisance`).

    By default identities differ in colour and head shape as much as in local features, so mean
    colours alone tell many pairs apart (:mod:`pyfacex.eval.shortcuts`). Look-alike cohorts move
    identity into the local detail: ``cohort_size`` consecutive identities of a split share skin,
    hair, eye and lip colour, head and jaw shape, hair style and beard
    (:data:`.identity.GLOBAL_PARAMETERS`) and differ in eyes, brows, nose, mouth, ears and marks.

    Args:
        seed: world seed (another seed is another population).
        size: image side in pixels (112 for recognition, 256 for landmarks).
        nuisance: the knobs of the nuisance factors.
        framing: "arcface" (insightface's 112×112 alignment) or "landmark" (the whole head, as FAN's
            crops), or a :class:`.render.Framing`; default "arcface" below 200 pixels, else "landmark".
        chunk: images rendered per vectorised pass (memory and cache use, not the result).
        cohort_size: identities per look-alike cohort (:meth:`cohorts`); 1: every identity its own,
            today's world unchanged.
        cohort_jitter: in [0, 1]: how far a member's shared parameters move from its cohort's
            towards its own draw (0: identical within a cohort).
        local_variety: in [0, 1.5]: scales the spread of the local features' shapes and
            placements (eyes, brows, nose, mouth, ears) about their middles; 1: today's.
    """

    def __init__(self, seed: int = 0, size: int = 112, nuisance: Nuisance | None = None,
                 framing: str | Framing | None = None, chunk: int = 64, cohort_size: int = 1,
                 cohort_jitter: float = 0.0, local_variety: float = 1.0):
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed: expected an int >= 0, got {seed!r}")
        if not isinstance(size, int) or size < 16:
            raise ValueError(f"size: expected an int >= 16 (pixels), got {size!r}")
        if framing is None:
            framing = "arcface" if size < 200 else "landmark"
        if isinstance(framing, str):
            if framing not in FRAMINGS:
                raise ValueError(f"framing: expected one of {', '.join(FRAMINGS)} or a Framing, got {framing!r}")
            framing = FRAMINGS[framing]
        if chunk < 1:
            raise ValueError(f"chunk: expected >= 1, got {chunk}")
        if isinstance(cohort_size, bool) or not isinstance(cohort_size, int) or cohort_size < 1:
            raise ValueError(f"cohort_size: expected an int >= 1, got {cohort_size!r}")
        self.seed, self.size, self.framing, self.chunk = seed, size, framing, chunk
        self.nuisance = nuisance if nuisance is not None else Nuisance()
        self.cohort_size = cohort_size
        self.cohort_jitter = _check_fraction("cohort_jitter", cohort_jitter, 1.0)
        self.local_variety = _check_fraction("local_variety", local_variety, MAX_LOCAL_VARIETY)

    def __repr__(self) -> str:
        population = "" if (self.cohort_size, self.cohort_jitter, self.local_variety) == (1, 0.0, 1.0) else \
            f", cohort_size={self.cohort_size}, cohort_jitter={self.cohort_jitter}, local_variety={self.local_variety}"
        return f"SyntheticFaceWorld(seed={self.seed}, size={self.size}, nuisance={self.nuisance}{population})"

    def identities(self, split: str, n: int) -> torch.Tensor:
        """The first n identity ids of a split ("train" or "test"); the splits are disjoint. (n,) int64."""
        if split not in ("train", "test"):
            raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
        if n < 0:
            raise ValueError(f"n: expected >= 0, got {n}")
        return torch.arange(n, dtype=torch.int64) + (TEST_IDENTITY_OFFSET if split == "test" else 0)

    def cohorts(self, identity) -> torch.Tensor:
        """The look-alike cohort of each identity: ``cohort_size`` consecutive ids of one split form
        a cohort (the first ids of each split start one), and no cohort spans both splits.

        Args:
            identity: (B,) int64 ids (a tensor, sequence or int).
        Returns:
            (B,) int64 cohort ids (the identity ids themselves when ``cohort_size`` is 1).
        """
        identity = torch.as_tensor(identity, dtype=torch.int64)
        start = torch.where(identity >= TEST_IDENTITY_OFFSET, TEST_IDENTITY_OFFSET, 0)
        return start + torch.div(identity - start, self.cohort_size, rounding_mode="floor")

    def _knobs_and_values(self, overrides: dict) -> tuple[Nuisance, dict]:
        """Split overrides into knob changes (names only knobs have) and exact factor values."""
        knob_names = {f.name for f in dataclasses.fields(Nuisance)}
        knobs = {k: v for k, v in overrides.items() if k in knob_names and k not in FACTORS}
        values = {k: v for k, v in overrides.items() if k not in knobs}
        return self.nuisance.replace(**knobs), values

    def render(self, identity, sample, **overrides) -> FaceBatch:
        """Still images of (identity[i], sample[i]).

        Args:
            identity, sample: (B,) int64 tensors (or sequences / ints, broadcast together).
            overrides: a factor name (:data:`.nuisance.FACTORS`, e.g. ``yaw=60.0``, ``blur=``,
                ``resolution=``, ``occluder="mask"``) fixes that factor to a number or a (B,) tensor;
                a knob-only name (``difficulty=``, ``expression=``, ``occlusion=``, ...) changes the
                knob for this call.
        """
        identity, sample = torch.broadcast_tensors(torch.as_tensor(identity, dtype=torch.int64),
                                                   torch.as_tensor(sample, dtype=torch.int64))
        identity, sample = identity.reshape(-1), sample.reshape(-1)
        knobs, values = self._knobs_and_values(overrides)
        key = make_key(self.seed, identity, sample, _STILL)
        nuisance = sample_nuisance(key, knobs, self.size, values)
        return self._render(identity, sample, key, nuisance)

    def video(self, identity: int, video: int, num_frames: int, **overrides) -> FaceBatch:
        """The frames of one video of an identity: smooth pose, expression and blur trajectories,
        the same background, light and occluder throughout. ``sample`` holds the frame index."""
        knobs, values = self._knobs_and_values(overrides)
        video_key = make_key(self.seed, int(identity), int(video), _VIDEO)
        nuisance = video_nuisance(video_key, num_frames, knobs, self.size, values)
        frames = torch.arange(num_frames, dtype=torch.int64)
        # The background is the video's; the per-frame key only draws sensor noise.
        key = make_key(video_key, frames)
        return self._render(torch.full_like(frames, int(identity)), frames, key, nuisance,
                            background_key=video_key.expand(num_frames))

    def _render(self, identity, sample, key, nuisance, background_key=None) -> FaceBatch:
        background_key = key if background_key is None else background_key
        if len(identity) == 0:
            return FaceBatch(torch.zeros(0, 3, self.size, self.size, dtype=torch.uint8), torch.zeros(0, 68, 2),
                             torch.zeros(0, 68, dtype=torch.bool), torch.zeros(0, 3), nuisance, identity, sample)
        batches = []
        for start in range(0, len(identity), self.chunk):
            part = slice(start, start + self.chunk)
            values = {k: v[part] for k, v in nuisance.items()}
            params = sample_identities(self.seed, identity[part],
                                       self.cohorts(identity[part]) if self.cohort_size > 1 else None,
                                       self.cohort_jitter, self.local_variety)
            rendered = render_batch(params, values, background_key[part], self.size, self.framing)
            images = degrade(rendered.images, values, key[part])
            pose = torch.stack([values["yaw"], values["pitch"], values["roll"]], -1)
            batches.append(FaceBatch(images, rendered.landmarks, rendered.visible, pose, values,
                                     identity[part], sample[part]))
        return FaceBatch.cat(batches)
