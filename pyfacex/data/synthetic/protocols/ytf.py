"""YouTube-Faces-like video verification protocol in YTF's own layout.

The real format (YouTube Faces DB, Wolf, Hassner and Maoz, CVPR 2011, www.cs.tau.ac.il/~wolf/ytfaces;
public readers: vipy's ``youtubefaces.py``, the YTF loaders that read ``splits.txt`` with pandas):

- ``frame_images_DB/<name>/<video>/<video>.<frame>.jpg``: the frames of video ``<video>`` (0, 1, ...)
  of person ``<name>`` (``Alicia_Witt/5/5.2247.jpg``);
- ``frame_images_DB/<name>.labeled_faces.txt``: one CSV line per frame,
  ``<name>\\<video>\\<video>.<frame>.jpg,0,<x centre>,<y centre>,<width>,<height>,0.0,1`` (Windows
  separators in the path; readers use fields 0 and 2-5);
- ``splits.txt``: a header naming the columns, ``split number, pair number, first name, second name,
  is same``, then one line per video pair, ``, ``-separated, names ``<person>/<video>``, is same 1|0;
  10 splits of 500 pairs (250 same, 250 different), splits disjoint in people. Readers strip the
  fields and select the columns by header name ("first name", "second name", "is same"); the exact
  set of the release's remaining columns could not be confirmed from the sources at hand.

Synthetic mapping: person ``Person_<k:06d>`` is the k-th world test identity; each split has its own
pool of ``identities_per_split`` people with ``videos_per_identity`` videos each
(``world.video``, frame counts drawn from ``frames_per_video``, the world's own nuisances, which vary
smoothly within a video); same pairs are two videos of one person.
"""
from __future__ import annotations

import os
from pathlib import Path

from . import _common as C

__all__ = ["write_ytf_like"]

_HEADER = "split number, pair number, first name, second name, is same"


def write_ytf_like(world, out_dir: str | os.PathLike, splits: int = 10, pairs_per_split: int = 50,
                   identities_per_split: int = 20, videos_per_identity: int = 3,
                   frames_per_video: tuple[int, int] = (8, 12), seed: int = 0, progress: bool = True,
                   quality: int = 95) -> Path:
    """Write a YTF-like video-pair protocol drawn from ``world``'s test identities.

    Writes under ``out_dir``: ``frame_images_DB/<name>/<v>/<v>.<f>.jpg`` (f from 1),
    ``frame_images_DB/<name>.labeled_faces.txt`` (face box from the landmarks' extent),
    ``splits.txt`` (per split pairs_per_split same then pairs_per_split different pairs, pair numbers
    counting on over all splits) and ``pyfacex_ground_truth.json`` (per frame: world identity,
    video number, frame, pose, nuisances; "names": person name -> world identity).

    Args:
        world: a :class:`~pyfacex.data.synthetic.SyntheticFaceWorld` (uses ``video``).
        out_dir: the protocol's root (created if missing).
        splits: >= 2 people-disjoint splits (YTF: 10).
        pairs_per_split: >= 1 same pairs and as many different pairs per split (YTF: 250).
        identities_per_split: >= 2 people per split.
        videos_per_identity: >= 2 videos per person.
        frames_per_video: (lo, hi) frames per video, 1 <= lo <= hi.
        seed, progress, quality: as for every writer (:mod:`pyfacex.data.synthetic.protocols`).
    Returns:
        ``Path(out_dir)``.
    Raises:
        ValueError naming the argument (sizes out of range, more pairs than a split's people allow).
    """
    parameters = dict(splits=C.check_int("splits", splits, 2),
                      pairs_per_split=C.check_int("pairs_per_split", pairs_per_split, 1),
                      identities_per_split=C.check_int("identities_per_split", identities_per_split, 2),
                      videos_per_identity=C.check_int("videos_per_identity", videos_per_identity, 2),
                      frames_per_video=list(C.check_span("frames_per_video", frames_per_video, 1, 1 << 16, True)),
                      quality=C.check_quality(quality))
    generator = C.make_generator(seed)
    n, v = identities_per_split, videos_per_identity
    blocks = [tuple(C.draw_pairs(pairs_per_split, n, v, v, genuine=genuine, symmetric=True, generator=generator,
                                 argument="pairs_per_split") for genuine in (True, False)) for _ in range(splits)]
    identities = C.draw_identities(world, splits * n, generator)
    root = C.prepare_root(out_dir)
    base = C.sample_base(generator)
    counts = C.integers(generator, len(identities) * v, *frames_per_video)

    videos = []
    for index, count in enumerate(counts):
        identity, video = identities[index // v], index % v
        name = C.person_name(identity)
        videos.append(C.Video(tuple(f"frame_images_DB/{name}/{video}/{video}.{f + 1}.jpg" for f in range(count)),
                              identity, base + video))
    rendered = C.render_videos(world, root, videos, quality=quality, progress=progress, desc="YTF-like")

    for person in range(len(identities)):
        lines = []
        for video in videos[person * v:(person + 1) * v]:
            for path in video.paths:
                landmarks = rendered[path].landmarks
                (x0, y0), (x1, y1) = landmarks.min(0).values.tolist(), landmarks.max(0).values.tolist()
                side = max(x1 - x0, y1 - y0)
                windows_path = path.removeprefix("frame_images_DB/").replace("/", "\\")
                lines.append(f"{windows_path},0,{(x0 + x1) / 2:.0f},{(y0 + y1) / 2:.0f},{side:.0f},{side:.0f},0.0,1")
        C.write_lines(root / f"frame_images_DB/{C.person_name(identities[person])}.labeled_faces.txt", lines)

    lines, number = [_HEADER], 0
    for split, (same, different) in enumerate(blocks):
        pool = [C.person_name(i) for i in identities[split * n:(split + 1) * n]]
        for pairs, label in ((same, 1), (different, 0)):
            for p in pairs:
                number += 1
                lines.append(f"{split + 1}, {number}, {pool[p.id_a]}/{p.image_a}, {pool[p.id_b]}/{p.image_b}, {label}")
    C.write_lines(root / "splits.txt", lines)
    C.write_ground_truth(root, "ytf", seed, parameters, rendered,
                         names={C.person_name(i): i for i in identities})
    return root
