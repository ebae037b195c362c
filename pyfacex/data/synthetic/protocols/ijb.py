"""IJB-C-like template protocols (1:1 verification, 1:N identification) in the layout insightface's
IJB evaluation reads, plus the original IJB-C 1:N CSVs.

The real format (insightface ``recognition/_evaluation_/ijb/ijb_11.py`` and ``ijb_1n.py``; the
IJB-C protocol CSVs as read by bob.db.ijbc and strpy's ``janus.dataset.ijbc``):

- ``IJBC/loose_crop/<image>.jpg``: one face crop per line of the meta files: a detector's box
  enlarged around the face, not an aligned face (insightface's and AdaFace's evaluations align each
  by its five points before the network sees it);
- ``IJBC/meta/ijbc_face_tid_mid.txt``: ``<image> <template id> <media id>`` (space-separated), one line
  per image of a template. A media is one still (each still its own media id) or one video (all
  its frames share one media id); insightface averages frame features per media, then media per
  template;
- ``IJBC/meta/ijbc_template_pair_label.txt``: ``<template 1> <template 2> <label>``, label 1 for a
  genuine pair;
- ``IJBC/meta/ijbc_name_5pts_score.txt``: ``<image> x1 y1 x2 y2 x3 y3 x4 y4 x5 y5 <score>``, five
  landmarks (left eye, right eye, nose, left and right mouth corner, as seen in the image) in the
  crop's pixels and a detector score (insightface optionally weights features by it);
- ``IJBC/meta/ijbc_1N_gallery_G1.csv``, ``ijbc_1N_gallery_G2.csv``, ``ijbc_1N_probe_mixed.csv``: a
  header ``TEMPLATE_ID,SUBJECT_ID,FILENAME,SIGHTING_ID,FACE_X,FACE_Y,FACE_WIDTH,FACE_HEIGHT`` and one
  row per image; readers use columns 0 and 1 (template, subject). The two galleries hold disjoint
  subjects and still images only; every probe subject is in exactly one gallery, so each gallery
  search is open-set (the other gallery's probes have no mate).

Synthetic mapping: subject labels 1..subjects are world test identities (G1 the first half, G2 the
rest); every subject has one gallery template of ``gallery_stills`` stills and
``probe_templates_per_subject`` probe templates mixing ``probe_stills`` stills and ``probe_videos``
videos of ``frames_per_video`` frames (all of one identity). Nuisances are the world's own random
draws (unconstrained media). Loose crops (``loose_crop`` = c, the default 1.5): each image is rendered
at round(c · world.size) pixels around the face, which sits at the world's own face size times a
random zoom in :data:`LOOSE_ZOOM` and off the centre by a random shift of up to :data:`LOOSE_SHIFT`
of the side in x and y (each still and each video frame its own draw, as a detector's box per
frame): the ``scale``, ``shift_x`` and ``shift_y`` nuisance values, which replace the world's
misalignment draws, and whose blur is the world's at the face's scale. The 5-point file holds the
true five points of each crop (:func:`pyfacex.align.five_points` of the rendered landmarks), so
aligning by them gives the ArcFace-framed face the evaluation expects. ``loose_crop=None`` stores the
world's own renders instead (the files this writer wrote before loose crops: faces already framed
as the training sets' are, which hides whether an evaluation aligns). Templates, media and pairs do
not depend on ``loose_crop``. FILENAME is the ``loose_crop/<image>`` file itself (relative to
``IJBC/``; the crop is the whole image, so the face box comes from the landmarks) and SIGHTING_ID
the media id. 1:1 pairs: every probe template against its subject's gallery template (label 1) and
against ``impostors_per_probe`` other subjects' gallery templates (label 0). The detector score is
the fraction of the 68 landmarks the world marks visible.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from ..world import SyntheticFaceWorld
from . import _common as C

__all__ = ["LOOSE_SHIFT", "LOOSE_ZOOM", "write_ijb_like"]

LOOSE_ZOOM = (0.85, 1.15)
"""Range of the face's size in a loose crop relative to the world's own face size (uniform draws)."""

LOOSE_SHIFT = 0.08
"""Largest offset of the face from a loose crop's centre, as a fraction of the crop's side, in x and y."""

_CSV_HEADER = "TEMPLATE_ID,SUBJECT_ID,FILENAME,SIGHTING_ID,FACE_X,FACE_Y,FACE_WIDTH,FACE_HEIGHT"


def write_ijb_like(world, out_dir: str | os.PathLike, subjects: int = 60, probe_templates_per_subject: int = 2,
                   gallery_stills: tuple[int, int] = (2, 5), probe_stills: tuple[int, int] = (0, 3),
                   probe_videos: tuple[int, int] = (1, 2), frames_per_video: tuple[int, int] = (4, 8),
                   impostors_per_probe: int = 10, seed: int = 0, progress: bool = True, quality: int = 95,
                   loose_crop: float | None = 1.5) -> Path:
    """Write an IJB-C-like protocol drawn from ``world``'s test identities.

    Writes under ``out_dir/IJBC``: ``loose_crop/<n>.jpg`` (n = 1, 2, ... in template order: gallery
    templates, then probe templates; within a template its stills, then its videos' frames) and
    ``meta/`` with ``ijbc_face_tid_mid.txt``, ``ijbc_template_pair_label.txt``,
    ``ijbc_name_5pts_score.txt``, ``ijbc_1N_gallery_G1.csv``, ``ijbc_1N_gallery_G2.csv``,
    ``ijbc_1N_probe_mixed.csv``; and ``out_dir/pyfacex_ground_truth.json`` (per image: world identity,
    sample or video/frame, pose, nuisances; "subjects": label -> world identity; "templates":
    template id -> {"subject", "role": "G1" | "G2" | "probe"}).

    Template ids: gallery templates 1..subjects (template t belongs to subject t), probe templates
    from subjects + 1 on. Media ids count from 1 over all stills and videos.

    Args:
        world: a :class:`~pyfacex.data.synthetic.SyntheticFaceWorld`.
        out_dir: the protocol's root (created if missing).
        subjects: >= 2 (G1 gets ceil(subjects / 2)).
        probe_templates_per_subject: >= 1.
        gallery_stills: (lo, hi) stills per gallery template, 1 <= lo <= hi.
        probe_stills, probe_videos: (lo, hi) stills / videos per probe template, 0 <= lo <= hi, with
            probe_stills lo + probe_videos lo >= 1 (no empty template).
        frames_per_video: (lo, hi) frames per video, 1 <= lo <= hi.
        impostors_per_probe: 0 <= impostor pairs per probe template <= subjects - 1.
        seed, progress, quality: as for every writer (:mod:`pyfacex.data.synthetic.protocols`).
        loose_crop: c in [1, 4]: loose crops of round(c · world.size) pixels at a random zoom and
            offset (module docstring); None: the world's own ArcFace-framed renders.
    Returns:
        ``Path(out_dir)``.
    Raises:
        ValueError naming the argument.
    """
    big = 1 << 16
    parameters = dict(subjects=C.check_int("subjects", subjects, 2),
                      probe_templates_per_subject=C.check_int("probe_templates_per_subject",
                                                              probe_templates_per_subject, 1),
                      gallery_stills=list(C.check_span("gallery_stills", gallery_stills, 1, big, True)),
                      probe_stills=list(C.check_span("probe_stills", probe_stills, 0, big, True)),
                      probe_videos=list(C.check_span("probe_videos", probe_videos, 0, big, True)),
                      frames_per_video=list(C.check_span("frames_per_video", frames_per_video, 1, big, True)),
                      impostors_per_probe=C.check_int("impostors_per_probe", impostors_per_probe, 0),
                      quality=C.check_quality(quality))
    if loose_crop is not None:   # recorded when given: the files of loose_crop=None stay as they were
        parameters["loose_crop"] = C.check_number("loose_crop", loose_crop, 1.0, 4.0)
    if probe_stills[0] + probe_videos[0] < 1:
        raise ValueError(f"probe_videos: with probe_stills {tuple(probe_stills)} a probe template could be "
                         f"empty; expected probe_stills lo + probe_videos lo >= 1, got {tuple(probe_videos)}")
    if impostors_per_probe > subjects - 1:
        raise ValueError(f"impostors_per_probe: at most subjects - 1 = {subjects - 1} other subjects, "
                         f"got {impostors_per_probe}")
    generator = C.make_generator(seed)
    identities = C.draw_identities(world, subjects, generator)
    root = C.prepare_root(out_dir)
    base = C.sample_base(generator)
    g1 = -(-subjects // 2)

    # templates: (template id, subject label, role, [stills], [video frame counts])
    templates = [(label, label, "G1" if label <= g1 else "G2", C.integers(generator, 1, *gallery_stills)[0], [])
                 for label in range(1, subjects + 1)]
    for label in range(1, subjects + 1):
        for j in range(probe_templates_per_subject):
            stills = C.integers(generator, 1, *probe_stills)[0]
            videos = C.integers(generator, 1, *probe_videos)[0]
            templates.append((subjects + (label - 1) * probe_templates_per_subject + j + 1, label, "probe", stills,
                              C.integers(generator, videos, *frames_per_video)))

    rows = []  # per image: (name, template, media, subject label)
    stills, videos, media = [], [], 0
    used = {label: 0 for label in range(1, subjects + 1)}  # per subject: next sample / video number
    for template, label, _, n_stills, frame_counts in templates:
        for _ in range(n_stills):
            media += 1
            name = f"{len(rows) + 1}.jpg"
            rows.append((name, template, media, label))
            stills.append(C.Still(f"IJBC/loose_crop/{name}", identities[label - 1], base + used[label]))
            used[label] += 1
        for count in frame_counts:
            media += 1
            names = [f"{len(rows) + f + 1}.jpg" for f in range(count)]
            rows += [(name, template, media, label) for name in names]
            videos.append(C.Video(tuple(f"IJBC/loose_crop/{name}" for name in names), identities[label - 1],
                                  base + used[label]))
            used[label] += 1
    pairs = []
    for template, label, _, _, _ in templates[subjects:]:
        draws = torch.randperm(subjects - 1, generator=generator)[:impostors_per_probe].tolist()
        others = [o + 1 + (o + 1 >= label) for o in draws]  # the other subjects' labels, skipping `label`
        pairs += [(label, template, 1)] + [(other, template, 0) for other in others]
    camera = world
    if loose_crop is not None:   # drawn after everything above, so templates and pairs do not depend on it
        camera = _loose_world(world, round(loose_crop * world.size))
        stills = [dataclasses.replace(still, overrides=_loose_draws(generator, 1, scalar=True)) for still in stills]
        videos = [dataclasses.replace(video, overrides=_loose_draws(generator, len(video.paths))) for video in videos]
    rendered = C.render_stills(camera, root, stills, quality=quality, progress=progress, desc="IJB-like stills")
    rendered.update(C.render_videos(camera, root, videos, quality=quality, progress=progress, desc="IJB-like videos"))

    meta = root / "IJBC/meta"
    C.write_lines(meta / "ijbc_face_tid_mid.txt", [f"{name} {t} {m}" for name, t, m, _ in rows])
    points = []
    for name, *_ in rows:
        image = rendered[f"IJBC/loose_crop/{name}"]
        xy = " ".join(f"{v:.3f}" for v in C.five_points(image.landmarks).reshape(-1).tolist())
        points.append(f"{name} {xy} {image.visible.float().mean().item():.3f}")
    C.write_lines(meta / "ijbc_name_5pts_score.txt", points)

    def csv_rows(role: str) -> list[str]:
        lines = [_CSV_HEADER]
        roles = {t: r for t, _, r, _, _ in templates}
        for name, t, m, label in rows:
            if roles[t] == role:
                landmarks = rendered[f"IJBC/loose_crop/{name}"].landmarks
                x0, y0 = landmarks.min(0).values.tolist()
                x1, y1 = landmarks.max(0).values.tolist()
                lines.append(f"{t},{label},loose_crop/{name},{m},{x0:.0f},{y0:.0f},{x1 - x0:.0f},{y1 - y0:.0f}")
        return lines

    for role, file in (("G1", "ijbc_1N_gallery_G1.csv"), ("G2", "ijbc_1N_gallery_G2.csv"),
                       ("probe", "ijbc_1N_probe_mixed.csv")):
        C.write_lines(meta / file, csv_rows(role))

    C.write_lines(meta / "ijbc_template_pair_label.txt", [f"{a} {b} {y}" for a, b, y in sorted(pairs)])
    C.write_ground_truth(root, "ijb", seed, parameters, rendered,
                         subjects={str(label): identity for label, identity in enumerate(identities, start=1)},
                         templates={str(t): {"subject": label, "role": role} for t, label, role, _, _ in templates})
    return root


def _loose_world(world, side: int) -> SyntheticFaceWorld:
    """``world`` rendering ``side``-pixel images whose face has the size it has in ``world``'s own
    images: its framing scale divided by side / world.size, and its blur knobs too (blur is in pixels
    of the image side, so the face is blurred as much as in ``world``'s renders). Every identity and
    every other nuisance draw is ``world``'s."""
    ratio = side / world.size
    knobs = world.nuisance.replace(blur=world.nuisance.blur / ratio, motion_blur=world.nuisance.motion_blur / ratio)
    framing = dataclasses.replace(world.framing, scale=world.framing.scale / ratio)
    return SyntheticFaceWorld(seed=world.seed, size=side, nuisance=knobs, framing=framing, chunk=world.chunk,
                              cohort_size=world.cohort_size, cohort_jitter=world.cohort_jitter,
                              local_variety=world.local_variety)


def _loose_draws(generator: torch.Generator, count: int, scalar: bool = False) -> dict:
    """The loose-crop nuisance overrides of ``count`` images (a still, or a video's frames): scale in
    :data:`LOOSE_ZOOM`, shift_x and shift_y in ±:data:`LOOSE_SHIFT`; floats when ``scalar``, else (count,)."""
    scale = C.uniform(generator, count, *LOOSE_ZOOM)
    shift_x = C.uniform(generator, count, -LOOSE_SHIFT, LOOSE_SHIFT)
    shift_y = C.uniform(generator, count, -LOOSE_SHIFT, LOOSE_SHIFT)
    values = {"scale": scale, "shift_x": shift_x, "shift_y": shift_y}
    if scalar:
        return {name: value[0] for name, value in values.items()}
    return {name: torch.tensor(value, dtype=torch.float32) for name, value in values.items()}
