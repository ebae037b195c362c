"""What every synthetic protocol writer shares: argument checks, the identity and pair draws, batched
rendering to JPEG files, and the ground-truth sidecar.

Randomness: a writer makes one ``torch.Generator`` from its ``seed`` and draws everything (identity
order, pairs, nuisance values, sample numbers) from it in a fixed order; images depend only on the
world and on (identity, sample) or (identity, video), so (world seed, seed) fixes every byte written.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ....align import five_points  # noqa: F401  (the writers' 68 -> 5 points: one definition, insightface's)
from ..._args import check_int
from ...codec import encode_jpeg
from ...verification_bin import write_verification_bin
from ..world import TEST_IDENTITY_OFFSET

GROUND_TRUTH = "pyfacex_ground_truth.json"
"""Name of the sidecar every writer puts at the protocol's root (see :func:`write_ground_truth`)."""

_SAMPLE_SPACE = 1 << 30  # sample / video numbers are drawn below this


# ----------------------------------------------------------------------------------------------------
# arguments


def check_number(name: str, value, low: float, high: float) -> float:
    """``value`` as a float in [low, high], else TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name}: expected a number in [{low}, {high}], got {value}")
    return float(value)


def check_span(name: str, value, low: float, high: float, integer: bool = False) -> tuple:
    """``value`` as a pair (lo, hi) with low <= lo <= hi <= high (ints when ``integer``)."""
    kinds = (int,) if integer else (int, float)
    if (not isinstance(value, Sequence) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, kinds) for v in value)):
        kind = "ints" if integer else "numbers"
        raise TypeError(f"{name}: expected a pair (lo, hi) of {kind}, got {value!r}")
    lo, hi = value
    if not low <= lo <= hi <= high:
        raise ValueError(f"{name}: expected {low} <= lo <= hi <= {high}, got {value!r}")
    return lo, hi


def check_quality(quality) -> int:
    """A JPEG ``quality`` in 1..100."""
    if check_int("quality", quality, 1) > 100:
        raise ValueError(f"quality: expected an int in 1..100, got {quality}")
    return quality


def check_seed(seed) -> int:
    """The writers' ``seed``: an int >= 0."""
    return check_int("seed", seed, 0)


def make_generator(seed: int) -> torch.Generator:
    """The CPU generator every draw of one writer call comes from."""
    generator = torch.Generator()
    generator.manual_seed(check_seed(seed))
    return generator


def prepare_root(out_dir: str | os.PathLike) -> Path:
    """``out_dir`` as a Path, created if missing; a file there is an error naming ``out_dir``."""
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"out_dir: {root} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    return root


# ----------------------------------------------------------------------------------------------------
# draws


def draw_identities(world, count: int, generator: torch.Generator) -> list[int]:
    """``count`` distinct test-split identities of ``world`` in an order shuffled by ``generator``.

    In a world of look-alike cohorts (``world.cohort_size`` > 1) the members of a cohort stay
    together (cohorts and members each in shuffled order), so a pool of whole cohorts pairs its
    impostors among look-alikes, as CALFW and CPLFW pick impostors of one gender and race to keep
    attributes from deciding pairs.
    """
    identities = world.identities("test", count)
    order = torch.randperm(count, generator=generator).tolist()
    if world.cohort_size > 1:
        cohort = world.cohorts(identities).tolist()
        first = {}  # a cohort's rank: where its first member fell in the shuffle
        for position, i in enumerate(order):
            first.setdefault(cohort[i], position)
        order.sort(key=lambda i: first[cohort[i]])
    return [identities[i].item() for i in order]


def person_name(identity: int) -> str:
    """The name a protocol gives a world test identity where the real benchmark has a person's name:
    ``Person_<k:06d>`` for the k-th test identity (k from 0)."""
    return f"Person_{identity - TEST_IDENTITY_OFFSET:06d}"


def sample_base(generator: torch.Generator) -> int:
    """A random offset for sample (or video) numbers: base + k is then distinct for every k of a call."""
    return int(torch.randint(_SAMPLE_SPACE, (1,), generator=generator))


def uniform(generator: torch.Generator, count: int, lo: float, hi: float) -> list[float]:
    """``count`` draws from U[lo, hi] as Python floats."""
    return (lo + (hi - lo) * torch.rand(count, generator=generator, dtype=torch.float64)).tolist()


def integers(generator: torch.Generator, count: int, lo: int, hi: int) -> list[int]:
    """``count`` draws from the integers lo..hi inclusive."""
    return torch.randint(lo, hi + 1, (count,), generator=generator).tolist()


def _distinct(candidates: int, count: int, generator: torch.Generator) -> list[int]:
    """``count`` distinct ints of range(candidates), in random order."""
    if candidates <= 1 << 22:
        return torch.randperm(candidates, generator=generator)[:count].tolist()
    chosen, seen = [], set()  # sparse: rejection is cheap and avoids a huge permutation
    while len(chosen) < count:
        for value in torch.randint(candidates, (2 * (count - len(chosen)),), generator=generator).tolist():
            if value not in seen:
                seen.add(value)
                chosen.append(value)
                if len(chosen) == count:
                    break
    return chosen


def _unordered(index: int, n: int) -> tuple[int, int]:
    """The index-th pair (i, j), i < j < n, in row-major order."""
    for i in range(n - 1):
        if index < n - 1 - i:
            return i, i + 1 + index
        index -= n - 1 - i
    raise IndexError(index)


class Pair(NamedTuple):
    """Two images of a pool: identity index and image index of each side (0-based)."""

    id_a: int
    image_a: int
    id_b: int
    image_b: int


def draw_pairs(count: int, identities: int, images_a: int, images_b: int, *, genuine: bool,
               symmetric: bool, generator: torch.Generator, argument: str) -> list[Pair]:
    """``count`` distinct pairs over a pool of ``identities`` identities, sorted.

    Side a indexes an image set of ``images_a`` images per identity, side b one of ``images_b``.
    ``genuine`` pairs have id_a == id_b, impostor pairs id_a != id_b. ``symmetric`` means both sides
    index the same image set (images_a must equal images_b): then (a, x, b, y) and (b, y, a, x) are
    one pair, drawn at most once with (id_a, image_a) < (id_b, image_b), and a genuine pair never
    pairs an image with itself. Raises ValueError naming ``argument`` when fewer than ``count``
    distinct pairs exist.
    """
    if symmetric and images_a != images_b:
        raise ValueError("symmetric pairs need one image set (images_a == images_b)")
    k_a, k_b, n = images_a, images_b, identities
    if genuine:
        per = k_a * (k_a - 1) // 2 if symmetric else k_a * k_b
        capacity = n * per
    else:
        per = k_a * k_b
        capacity = (n * (n - 1) // 2 if symmetric else n * (n - 1)) * per
    if count > capacity:
        kind = "genuine" if genuine else "impostor"
        raise ValueError(f"{argument}: {count} distinct {kind} pairs requested but the pool of {n} "
                         f"identities x {k_a}{'' if symmetric else f'/{k_b}'} images holds only {capacity}")
    pairs = []
    for q in _distinct(capacity, count, generator):
        if genuine and symmetric:
            x, y = _unordered(q % per, k_a)
            pairs.append(Pair(q // per, x, q // per, y))
        elif genuine:
            pairs.append(Pair(q // per, (q % per) // k_b, q // per, q % k_b))
        else:
            x, y = (q % per) // k_b, q % k_b
            if symmetric:
                i, j = _unordered(q // per, n)
            else:
                i, rest = divmod(q // per, n - 1)
                j = rest + (rest >= i)
            pairs.append(Pair(i, x, j, y))
    return sorted(pairs)


# ----------------------------------------------------------------------------------------------------
# rendering


@dataclass(frozen=True)
class Still:
    """One image to render: written to ``path`` (relative to the root, "/"-separated).

    ``overrides`` are exact nuisance values (world.render keywords); ``size`` stores the image at
    size × size pixels (area-downsampled: the native resolution of a low-quality benchmark) instead
    of the world's size.
    """

    path: str
    identity: int
    sample: int
    overrides: Mapping[str, float] = field(default_factory=dict)
    size: int | None = None


@dataclass(frozen=True)
class Video:
    """One video to render, frame f written to ``paths[f]``."""

    paths: tuple[str, ...]
    identity: int
    video: int
    overrides: Mapping[str, float] = field(default_factory=dict)


class Rendered(NamedTuple):
    """What a writer keeps of a rendered image: its ground-truth record and its landmarks.

    record: JSON-ready dict (identity, sample or video/frame, pose [yaw, pitch, roll], nuisance, size).
    landmarks: float32 (68, 2) pixel x, y in the stored image; visible: bool (68,).
    """

    record: dict
    landmarks: torch.Tensor
    visible: torch.Tensor


def _store(root: Path, path: str, image: torch.Tensor, quality: int) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(encode_jpeg(image, quality))


def _shrink(image: torch.Tensor, size: int) -> torch.Tensor:
    small = F.interpolate(image[None].float(), size=(size, size), mode="area")[0]
    return small.round().clamp(0, 255).to(torch.uint8)


def _record(batch, i: int, extra: dict) -> dict:
    return {"identity": int(batch.identity[i]), **extra,
            "pose": [round(float(v), 4) for v in batch.pose[i].tolist()],
            "nuisance": {k: round(float(v[i]), 4) for k, v in sorted(batch.nuisance.items())}}


def _batches(stills: Sequence[Still], batch_size: int):
    """Consecutive runs of at most batch_size stills that share their override names."""
    start = 0
    while start < len(stills):
        keys = sorted(stills[start].overrides)
        stop = start + 1
        while stop < len(stills) and stop - start < batch_size and sorted(stills[stop].overrides) == keys:
            stop += 1
        yield stills[start:stop], keys
        start = stop


def render_stills(world, root: Path, stills: Sequence[Still], *, quality: int, progress: bool, desc: str,
                  batch_size: int = 64) -> dict[str, Rendered]:
    """Render ``stills`` in batches, write each as JPEG under ``root``; return path -> Rendered."""
    out: dict[str, Rendered] = {}
    with tqdm(total=len(stills), desc=desc, unit="img", disable=not progress) as bar:
        for chunk, keys in _batches(stills, batch_size):
            overrides = {k: torch.tensor([s.overrides[k] for s in chunk], dtype=torch.float32) for k in keys}
            batch = world.render(torch.tensor([s.identity for s in chunk], dtype=torch.int64),
                                 torch.tensor([s.sample for s in chunk], dtype=torch.int64), **overrides)
            for i, still in enumerate(chunk):
                image, landmarks = batch.images[i], batch.landmarks[i].float()
                if still.size is not None:
                    landmarks = landmarks * (still.size / image.shape[-1])
                    image = _shrink(image, still.size)
                _store(root, still.path, image, quality)
                record = _record(batch, i, {"sample": still.sample, "size": int(image.shape[-1])})
                out[still.path] = Rendered(record, landmarks, batch.visible[i].clone())
            bar.update(len(chunk))
    return out


def render_videos(world, root: Path, videos: Sequence[Video], *, quality: int, progress: bool,
                  desc: str) -> dict[str, Rendered]:
    """Render each video in one call, write frame f to ``video.paths[f]``; return path -> Rendered."""
    out: dict[str, Rendered] = {}
    with tqdm(total=sum(len(v.paths) for v in videos), desc=desc, unit="frame", disable=not progress) as bar:
        for video in videos:
            batch = world.video(video.identity, video.video, len(video.paths), **video.overrides)
            for f, path in enumerate(video.paths):
                _store(root, path, batch.images[f], quality)
                record = _record(batch, f, {"video": video.video, "frame": f,
                                            "size": int(batch.images.shape[-1])})
                out[path] = Rendered(record, batch.landmarks[f].float().clone(), batch.visible[f].clone())
            bar.update(len(video.paths))
    return out


# ----------------------------------------------------------------------------------------------------
# outputs


def write_lines(path: Path, lines: Sequence[str]) -> None:
    """Write text lines with "\\n" endings (creating the parent folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_pairs_bin(root: Path, name: str, pairs: Sequence[tuple[str, str, bool]]) -> None:
    """Write ``root/name`` as an insightface verification ``.bin`` of (path_a, path_b, same) pairs,
    in order, holding the stored JPEG bytes themselves (the protocol's images, not re-encoded)."""
    images = [(root / path).read_bytes() for a, b, _ in pairs for path in (a, b)]
    write_verification_bin(root / name, images, torch.tensor([same for *_, same in pairs], dtype=torch.bool))


def write_ground_truth(root: Path, protocol: str, seed: int, parameters: Mapping, images: Mapping[str, Rendered],
                       **extra) -> Path:
    """Write ``root/pyfacex_ground_truth.json``: what the protocol files do not say but tests and users check.

    Keys: "protocol", "seed", "parameters" (the writer's arguments), "images" (stored path ->
    {"identity": world identity, "sample" or "video"/"frame", "pose": [yaw, pitch, roll] degrees,
    "nuisance": {factor: value}, "size": stored side in px}) and the writer's ``extra`` keys (e.g.
    how the protocol's names and labels map to world identities).
    """
    document = {"protocol": protocol, "seed": seed, "parameters": dict(parameters),
                "images": {path: images[path].record for path in sorted(images)}, **extra}
    target = root / GROUND_TRUTH
    target.write_text(json.dumps(document, sort_keys=True, separators=(",", ":")), encoding="utf-8")
    return target

