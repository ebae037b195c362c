"""IJB-A-like 1:1 template verification protocol in IJB-A's own split layout.

The real format (IARPA Janus Benchmark A, Klare et al., CVPR 2015; read by
:func:`pyfacex.eval.ijb.read_ijba_metadata` / :func:`~pyfacex.eval.ijb.read_ijba_comparisons` as
the public IJB-A readers do, e.g. bob.db.ijba):

- ``IJB-A_11_sets/split{n}/train_{n}.csv``, ``verify_metadata_{n}.csv``: a header
  ``TEMPLATE_ID,SUBJECT_ID,FILE,MEDIA_ID,SIGHTING_ID,FRAME,FACE_X,FACE_Y,FACE_WIDTH,FACE_HEIGHT,
  RIGHT_EYE_X,RIGHT_EYE_Y,LEFT_EYE_X,LEFT_EYE_Y,NOSE_BASE_X,NOSE_BASE_Y`` (the release has more
  columns after these) and one row per image of a template; FILE is ``img/<n>.jpg`` for a still or
  ``frame/<media>_<frame>.jpg`` for a video frame (all frames of a video share MEDIA_ID), the face
  box is its top-left corner, width and height in the image's pixels;
- ``IJB-A_11_sets/split{n}/verify_comparisons_{n}.csv``: ``<template 1>,<template 2>`` per line, no
  header; a pair is genuine when the two templates have one SUBJECT_ID (IJB-A ships no labels);
- ``images/<FILE>``: the images. Ten splits, each with disjoint train and test subjects.

Synthetic mapping: subject ids 1..subjects are world test identities; every subject has
``templates_per_subject`` templates mixing ``stills`` stills and ``videos`` videos of
``frames_per_video`` frames (the world's own nuisances), rendered once and listed by every split
that uses the subject. Each split draws ``test_subjects`` subjects for ``verify_metadata`` (the rest
go to ``train``); its comparisons are every pair of templates of one test subject (genuine) and, for
every test template, ``impostors_per_template`` templates of other test subjects (impostor, each
unordered pair once). The face box is the square around the landmarks' extent (``face_box=
"landmarks"``) or the whole stored image (``"image"``: the render is already an aligned face crop,
framed as the training sets' faces are), the eyes and nose base the landmark means of insightface's
five points.

Within-template variation (LFENet, Sec. I and IV-A: IJB-A templates mix poses and occlusions, so that
each image carries local information the others lack): by default every image draws its own
nuisances from the world, so the images of a template mostly share a near-frontal, unoccluded look.
``yaw_spread`` and ``occlusion_share`` instead spread pose and occlusion across each template's media
(its stills and videos, a video's frames sharing its media's values):

- ``yaw_spread`` = Y: the n media of a template take their yaws from the n equal strata of
  [-Y, Y] (one uniform draw in each, strata in shuffled order), so every template of n >= 2 media
  shows both sides of the face;
- ``occlusion_share`` = p: ⌊p·n + ½⌋ media of a template, chosen at random, wear an occluder and
  the rest none; the occluded ones hide different regions, dealt from a shuffled cycle of
  :data:`OCCLUSION_REGIONS` (the eyes, the nose and mouth, the left or the right half of the face).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from ..nuisance import OCCLUDERS
from . import _common as C

__all__ = ["FACE_BOXES", "OCCLUSION_REGIONS", "write_ijba_like"]

OCCLUSION_REGIONS = (("sunglasses", 0.0, 0.0), ("mask", 0.0, 0.0), ("block", -1.0, 0.0), ("block", 1.0, 0.0))
"""The regions ``occlusion_share`` hides, as (occluder, occluder_x, occluder_y) nuisance values
(:data:`pyfacex.data.synthetic.nuisance.OCCLUDERS`): sunglasses over the eyes, a mask over the nose
and mouth, a block over the image-left and one over the image-right half of the face."""

FACE_BOXES = ("landmarks", "image")
"""The ``face_box`` choices: the square around the landmarks' extent, or the whole stored image."""

_HEADER = ("TEMPLATE_ID,SUBJECT_ID,FILE,MEDIA_ID,SIGHTING_ID,FRAME,FACE_X,FACE_Y,FACE_WIDTH,FACE_HEIGHT,"
           "RIGHT_EYE_X,RIGHT_EYE_Y,LEFT_EYE_X,LEFT_EYE_Y,NOSE_BASE_X,NOSE_BASE_Y")


def write_ijba_like(world, out_dir: str | os.PathLike, subjects: int = 30, splits: int = 10, test_subjects: int = 10,
                    templates_per_subject: int = 2, stills: tuple[int, int] = (1, 3), videos: tuple[int, int] = (0, 1),
                    frames_per_video: tuple[int, int] = (3, 5), impostors_per_template: int = 5, seed: int = 0,
                    progress: bool = True, quality: int = 95, yaw_spread: float | None = None,
                    occlusion_share: float | None = None, face_box: str = "landmarks") -> Path:
    """Write an IJB-A-like 1:1 protocol drawn from ``world``'s test identities.

    Writes under ``out_dir``: ``images/img/<n>.jpg`` and ``images/frame/<media>_<f:05d>.jpg``,
    ``IJB-A_11_sets/split{n}/{train,verify_metadata}_{n}.csv`` and ``verify_comparisons_{n}.csv``
    (module docstring) and ``pyfacex_ground_truth.json`` (per image: world identity, sample or
    video/frame, pose, nuisances; "subjects": subject id -> world identity; "templates": template id
    -> subject id; "splits": split -> its test subject ids).

    Args:
        world: a :class:`~pyfacex.data.synthetic.SyntheticFaceWorld`.
        out_dir: the protocol's root (created if missing).
        subjects: >= 3 identities in all.
        splits: 1..10 splits (IJB-A: 10).
        test_subjects: 2 <= test subjects per split < subjects (IJB-A: 167 of 500).
        templates_per_subject: >= 2 (so that every test subject has a genuine pair).
        stills, videos: (lo, hi) stills / videos per template, 0 <= lo <= hi, stills lo + videos lo >= 1.
        frames_per_video: (lo, hi), 1 <= lo <= hi.
        impostors_per_template: impostor comparisons drawn per test template, 0 <= n <=
            (test_subjects - 1) · templates_per_subject.
        seed, progress, quality: as for every writer (:mod:`pyfacex.data.synthetic.protocols`).
        yaw_spread: None (the world's own yaw draws) or Y in (0, 90] degrees: each template's media
            spread over [-Y, Y] (module docstring).
        occlusion_share: None (the world's own occluder draws) or p in [0, 1]: the share of each
            template's media that wear an occluder, each on another region (module docstring).
        face_box: "landmarks" (the square around the landmarks' extent) or "image" (the whole image).
    Returns:
        ``Path(out_dir)``.
    Raises:
        ValueError naming the argument.
    """
    big = 1 << 16
    parameters = dict(subjects=C.check_int("subjects", subjects, 3), splits=C.check_int("splits", splits, 1),
                      test_subjects=C.check_int("test_subjects", test_subjects, 2),
                      templates_per_subject=C.check_int("templates_per_subject", templates_per_subject, 2),
                      stills=list(C.check_span("stills", stills, 0, big, True)),
                      videos=list(C.check_span("videos", videos, 0, big, True)),
                      frames_per_video=list(C.check_span("frames_per_video", frames_per_video, 1, big, True)),
                      impostors_per_template=C.check_int("impostors_per_template", impostors_per_template, 0),
                      quality=C.check_quality(quality))
    spread = {}
    if yaw_spread is not None:
        spread["yaw_spread"] = C.check_number("yaw_spread", yaw_spread, 0.0, 90.0)
        if yaw_spread <= 0:
            raise ValueError(f"yaw_spread: expected None or a number in (0, 90] degrees, got {yaw_spread}")
    if occlusion_share is not None:
        spread["occlusion_share"] = C.check_number("occlusion_share", occlusion_share, 0.0, 1.0)
    if face_box not in FACE_BOXES:
        raise ValueError(f"face_box: expected one of {', '.join(FACE_BOXES)}, got {face_box!r}")
    if face_box != "landmarks":
        spread["face_box"] = face_box
    parameters.update(spread)   # recorded when given: the default protocol's files stay as they were
    if splits > 10:
        raise ValueError(f"splits: IJB-A has at most 10 splits (split1 ... split10), got {splits}")
    if test_subjects >= subjects:
        raise ValueError(f"test_subjects: expected fewer than subjects = {subjects} (the rest train), "
                         f"got {test_subjects}")
    if stills[0] + videos[0] < 1:
        raise ValueError(f"videos: with stills {tuple(stills)} a template could be empty; expected stills lo + "
                         f"videos lo >= 1, got {tuple(videos)}")
    most = (test_subjects - 1) * templates_per_subject
    if impostors_per_template > most:
        raise ValueError(f"impostors_per_template: at most (test_subjects - 1) * templates_per_subject = {most}, "
                         f"got {impostors_per_template}")
    generator = C.make_generator(seed)
    identities = C.draw_identities(world, subjects, generator)
    root = C.prepare_root(out_dir)
    base = C.sample_base(generator)

    # templates[t - 1] = (subject, [(file, media, frame or None)]); template ids 1.. in subject order
    templates: list[tuple[int, list[tuple[str, int, int | None]]]] = []
    still_jobs, video_jobs, media, used = [], [], 0, [0] * subjects
    for subject in range(1, subjects + 1):
        identity = identities[subject - 1]
        for _ in range(templates_per_subject):
            rows = []
            n_stills, n_videos = C.integers(generator, 1, *stills)[0], C.integers(generator, 1, *videos)[0]
            overrides = _spread_overrides(generator, n_stills + n_videos, yaw_spread, occlusion_share)
            for k in range(n_stills):
                media += 1
                file = f"img/{media}.jpg"
                rows.append((file, media, None))
                still_jobs.append(C.Still(f"images/{file}", identity, base + used[subject - 1], overrides[k]))
                used[subject - 1] += 1
            for k, count in enumerate(C.integers(generator, n_videos, *frames_per_video), start=n_stills):
                media += 1
                files = [f"frame/{media}_{f:05d}.jpg" for f in range(count)]
                rows += [(file, media, f) for f, file in enumerate(files)]
                video_jobs.append(C.Video(tuple(f"images/{file}" for file in files), identity,
                                          base + used[subject - 1], overrides[k]))
                used[subject - 1] += 1
            templates.append((subject, rows))
    rendered = C.render_stills(world, root, still_jobs, quality=quality, progress=progress, desc="IJB-A-like stills")
    rendered.update(C.render_videos(world, root, video_jobs, quality=quality, progress=progress,
                                    desc="IJB-A-like videos"))

    def metadata_lines(chosen: set[int]) -> list[str]:
        lines, sighting = [_HEADER], 0
        for template, (subject, rows) in enumerate(templates, start=1):
            if subject not in chosen:
                continue
            for file, media_id, frame in rows:
                sighting += 1
                image = rendered[f"images/{file}"]
                landmarks = image.landmarks
                if face_box == "image":
                    left, top, side = 0.0, 0.0, float(image.record["size"])
                else:
                    (x0, y0), (x1, y1) = landmarks.min(0).values.tolist(), landmarks.max(0).values.tolist()
                    side = max(x1 - x0, y1 - y0)
                    left, top = (x0 + x1 - side) / 2, (y0 + y1 - side) / 2
                eye_l, eye_r, nose, _, _ = C.five_points(landmarks).tolist()   # image-left eye = right eye
                points = ",".join(f"{v:.1f}" for v in (*eye_l, *eye_r, *nose))
                lines.append(f"{template},{subject},{file},{media_id},{sighting},{'' if frame is None else frame},"
                             f"{left:.1f},{top:.1f},{side:.1f},{side:.1f},{points}")
        return lines

    split_subjects = {}
    by_subject = {}
    for template, (subject, _) in enumerate(templates, start=1):
        by_subject.setdefault(subject, []).append(template)
    for split in range(1, splits + 1):
        test = sorted(s + 1 for s in torch.randperm(subjects, generator=generator)[:test_subjects].tolist())
        split_subjects[str(split)] = test
        chosen = set(test)
        pairs = set()
        for subject in test:
            own = by_subject[subject]
            pairs.update((a, b) for i, a in enumerate(own) for b in own[i + 1:])
        others_of = {s: [t for o in test if o != s for t in by_subject[o]] for s in test}
        for subject in test:
            others = others_of[subject]
            for template in by_subject[subject]:
                for k in torch.randperm(len(others), generator=generator)[:impostors_per_template].tolist():
                    pairs.add(tuple(sorted((template, others[k]))))
        folder = root / "IJB-A_11_sets" / f"split{split}"
        C.write_lines(folder / f"verify_metadata_{split}.csv", metadata_lines(chosen))
        C.write_lines(folder / f"train_{split}.csv", metadata_lines(set(range(1, subjects + 1)) - chosen))
        C.write_lines(folder / f"verify_comparisons_{split}.csv", [f"{a},{b}" for a, b in sorted(pairs)])
    C.write_ground_truth(root, "ijba", seed, parameters, rendered,
                         subjects={str(s): identity for s, identity in enumerate(identities, start=1)},
                         templates={str(t): subject for t, (subject, _) in enumerate(templates, start=1)},
                         splits=split_subjects)
    return root


def _spread_overrides(generator: torch.Generator, media: int, yaw_spread: float | None,
                      occlusion_share: float | None) -> list[dict[str, float]]:
    """The nuisance overrides of a template's ``media`` items (module docstring): one dict per item,
    empty (and nothing drawn) when both options are None."""
    overrides: list[dict[str, float]] = [{} for _ in range(media)]
    if yaw_spread is not None:
        strata = torch.randperm(media, generator=generator).tolist()
        for item, (stratum, u) in enumerate(zip(strata, C.uniform(generator, media, 0.0, 1.0))):
            overrides[item]["yaw"] = yaw_spread * (2 * (stratum + u) / media - 1)
    if occlusion_share is not None:
        occluded = torch.randperm(media, generator=generator)[:math.floor(occlusion_share * media + 0.5)].tolist()
        regions = torch.randperm(len(OCCLUSION_REGIONS), generator=generator).tolist()
        for item in range(media):
            overrides[item].update(occluder=0.0, occluder_x=0.0, occluder_y=0.0)
        for k, item in enumerate(occluded):
            name, x, y = OCCLUSION_REGIONS[regions[k % len(regions)]]
            overrides[item].update(occluder=float(OCCLUDERS[name]), occluder_x=x, occluder_y=y)
    return overrides
