"""TinyFace-like low-resolution closed-set identification with distractors, in TinyFace's layout.

The real format (TinyFace, Cheng et al., "Low-Resolution Face Recognition", ACCV 2018,
qmul-tinyface.github.io; its evaluation as AdaFace's ``tinyface_helper.py`` and other public
readers implement it):

- ``Testing_Set/Probe/``, ``Testing_Set/Gallery_Match/``, ``Testing_Set/Gallery_Distractor/``:
  flat folders of JPEGs at their native low resolution (about 20×16 px on average);
- a labelled image is named ``<subject>_<photo>.jpg`` and readers take the label as
  ``int(name.split("_")[0])``; probe and gallery names never repeat (readers key images by name);
- ``Testing_Set/gallery_match_img_ID_pairs.mat`` (variables ``gallery_set``: (N, 1) cell of file
  names, ``gallery_ids``: (N, 1) labels) and ``Testing_Set/probe_img_ID_pairs.mat`` (``probe_set``,
  ``probe_ids``), MATLAB Level 5 files read with ``scipy.io.loadmat``;
- the protocol: every probe is searched in Gallery_Match + Gallery_Distractor (distractors labelled
  -100 by the readers: their people never appear as probes); rank-k accuracy / mAP.

Synthetic mapping: labels 1..identities are the probe people (each with probes_per_identity probe
and gallery_per_identity gallery images), the following labels the distractor people (who appear
only in Gallery_Distractor; named ``<label>_<photo>.jpg`` too, so a reader that labels by name sees
them as other people). Every image is rendered at a resolution (the world's down-and-up ``resolution``
override) drawn from ``probe_resolution`` or ``gallery_resolution`` with a Gaussian ``blur`` drawn
from ``probe_blur`` / ``gallery_blur``, then stored at that resolution (area downsampling).
"""
from __future__ import annotations

import os
from pathlib import Path

from ...matfile import write_mat
from . import _common as C

__all__ = ["write_tinyface_like"]


def write_tinyface_like(world, out_dir: str | os.PathLike, identities: int = 200, probes_per_identity: int = 2,
                        gallery_per_identity: int = 2, distractor_identities: int = 250,
                        distractors_per_identity: int = 4, probe_resolution: tuple[int, int] = (16, 32),
                        gallery_resolution: tuple[int, int] = (24, 48), probe_blur: tuple[float, float] = (0.5, 1.5),
                        gallery_blur: tuple[float, float] = (0.0, 0.5), seed: int = 0, progress: bool = True,
                        quality: int = 95) -> Path:
    """Write a TinyFace-like identification protocol drawn from ``world``'s test identities.

    Writes under ``out_dir/Testing_Set``: ``Probe/``, ``Gallery_Match/``, ``Gallery_Distractor/``
    (``<label>_<photo>.jpg``, each stored at its own low resolution), ``gallery_match_img_ID_pairs.mat``,
    ``probe_img_ID_pairs.mat``; and ``out_dir/pyfacex_ground_truth.json`` (per image: world identity,
    sample, pose, nuisances incl. resolution and blur, stored size; "labels": label -> world identity;
    "distractor_labels").

    Args:
        world: a :class:`~pyfacex.data.synthetic.SyntheticFaceWorld`.
        out_dir: the protocol's root (created if missing).
        identities: >= 1 probe people (each has both probe and gallery images).
        probes_per_identity, gallery_per_identity: >= 1 images of each probe person in Probe / Gallery_Match.
        distractor_identities: >= 0 people seen only in Gallery_Distractor, ``distractors_per_identity``
            (>= 1) images each.
        probe_resolution, gallery_resolution: (lo, hi) ints, 4 <= lo <= hi: each image's side in px,
            drawn uniformly (gallery_resolution also for distractors); at most the world's image size.
        probe_blur, gallery_blur: (lo, hi) Gaussian sigma in px (at the world's size), 0 <= lo <= hi.
        seed, progress, quality: as for every writer (:mod:`pyfacex.data.synthetic.protocols`).
    Returns:
        ``Path(out_dir)``.
    Raises:
        ValueError naming the argument (sizes out of range).
    """
    parameters = dict(identities=C.check_int("identities", identities, 1),
                      probes_per_identity=C.check_int("probes_per_identity", probes_per_identity, 1),
                      gallery_per_identity=C.check_int("gallery_per_identity", gallery_per_identity, 1),
                      distractor_identities=C.check_int("distractor_identities", distractor_identities, 0),
                      distractors_per_identity=C.check_int("distractors_per_identity", distractors_per_identity, 1),
                      probe_resolution=list(C.check_span("probe_resolution", probe_resolution, 4, 1 << 16, True)),
                      gallery_resolution=list(C.check_span("gallery_resolution", gallery_resolution, 4, 1 << 16,
                                                           True)),
                      probe_blur=list(C.check_span("probe_blur", probe_blur, 0.0, float("inf"))),
                      gallery_blur=list(C.check_span("gallery_blur", gallery_blur, 0.0, float("inf"))),
                      quality=C.check_quality(quality))
    for name, span in (("probe_resolution", probe_resolution), ("gallery_resolution", gallery_resolution)):
        if span[1] > world.size:
            raise ValueError(f"{name}: at most the world's image size {world.size} px, got {tuple(span)}")
    generator = C.make_generator(seed)
    people = C.draw_identities(world, identities + distractor_identities, generator)
    root = C.prepare_root(out_dir)
    base = C.sample_base(generator)

    # (folder, label, photo number) per image; labels are 1-based, probe people first
    plan = [("Probe", label, photo) for label in range(1, identities + 1)
            for photo in range(1, probes_per_identity + 1)]
    plan += [("Gallery_Match", label, probes_per_identity + photo) for label in range(1, identities + 1)
             for photo in range(1, gallery_per_identity + 1)]
    plan += [("Gallery_Distractor", identities + person, photo) for person in range(1, distractor_identities + 1)
             for photo in range(1, distractors_per_identity + 1)]
    probes = identities * probes_per_identity
    others = len(plan) - probes
    sizes = C.integers(generator, probes, *probe_resolution) + C.integers(generator, others, *gallery_resolution)
    blurs = C.uniform(generator, probes, *probe_blur) + C.uniform(generator, others, *gallery_blur)
    stills = [C.Still(f"Testing_Set/{folder}/{label}_{photo}.jpg", people[label - 1], base + photo,
                      {"resolution": float(size), "blur": blur}, size=size)
              for (folder, label, photo), size, blur in zip(plan, sizes, blurs)]  # the plan lists probes first
    for folder in ("Probe", "Gallery_Match", "Gallery_Distractor"):  # present even when empty, as released
        (root / "Testing_Set" / folder).mkdir(parents=True, exist_ok=True)
    rendered = C.render_stills(world, root, stills, quality=quality, progress=progress, desc="TinyFace-like")

    def listing(folder: str) -> tuple[list[str], list[int]]:
        rows = [(f"{label}_{photo}.jpg", label) for f, label, photo in plan if f == folder]
        return [name for name, _ in rows], [label for _, label in rows]

    names, labels = listing("Gallery_Match")
    write_mat(root / "Testing_Set/gallery_match_img_ID_pairs.mat", {"gallery_set": names, "gallery_ids": labels})
    names, labels = listing("Probe")
    write_mat(root / "Testing_Set/probe_img_ID_pairs.mat", {"probe_set": names, "probe_ids": labels})
    C.write_ground_truth(root, "tinyface", seed, parameters, rendered,
                         labels={str(label): identity for label, identity in enumerate(people, start=1)},
                         distractor_labels=list(range(identities + 1, identities + distractor_identities + 1)))
    return root
