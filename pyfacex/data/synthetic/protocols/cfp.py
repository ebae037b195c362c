"""CFP-like frontal-to-profile verification protocol in CFP's own layout (CFP-FP and CFP-FF).

The real format (the dataset's ``Readme.txt``, Sengupta et al., "Frontal to Profile Face
Verification in the Wild", WACV 2016; loaders in public code that read ``Protocol/Pair_list_*.txt``
and ``Split/<FF|FP>/<nn>/{same,diff}.txt``):

- ``Data/Images/<id>/frontal/<nn>.jpg`` (10 per person) and ``Data/Images/<id>/profile/<nn>.jpg``
  (4 per person), ``<id>`` the 3-digit person number 001..500, ``<nn>`` 2-digit from 01;
  ``Data/list_names.txt``: the person names in order, one a line;
- ``Protocol/Pair_list_F.txt`` / ``Pair_list_P.txt``: one line per frontal (5000) / profile (2000)
  image, ``<index> <path>``, index 1-based, path relative to ``Protocol/``
  (``1 ../Data/Images/001/frontal/01.jpg``);
- ``Protocol/Split/FP/<01..10>/same.txt`` and ``diff.txt``: 350 lines each, ``i,j`` with ``i`` a
  frontal index (Pair_list_F) and ``j`` a profile index (Pair_list_P); ``Split/FF/...`` the same
  with two frontal indices. "All 10 splits are separable in terms of identity."
- insightface's ``cfp_fp.bin`` / ``cfp_ff.bin``: the 7000 pairs, fold by fold (same then diff).

Synthetic mapping: person ``<id>`` (numbered in fold order) is a world test identity (named
``Person_<k:06d>`` in ``list_names.txt`` for the k-th test identity); frontal images are rendered with
yaw drawn in [-frontal_yaw, frontal_yaw] and profile images with |yaw| drawn in ``profile_yaw`` and a random side.
The 30-point fiducial files (``Data/Fiducial``) are not written.
"""
from __future__ import annotations

import os
from pathlib import Path

from . import _common as C

__all__ = ["write_cfp_fp_like"]


def write_cfp_fp_like(world, out_dir: str | os.PathLike, folds: int = 10, pairs_per_fold: int = 350,
                   identities_per_fold: int = 50, frontal_per_identity: int = 10, profile_per_identity: int = 4,
                   frontal_yaw: float = 10.0, profile_yaw: tuple[float, float] = (60.0, 90.0), seed: int = 0,
                   progress: bool = True, quality: int = 95) -> Path:
    """Write a CFP-like protocol (both the FP and the FF splits) drawn from ``world``'s test identities.

    Writes under ``out_dir``: ``Data/Images/<id>/{frontal,profile}/<nn>.jpg``, ``Data/list_names.txt``,
    ``Protocol/Pair_list_F.txt``, ``Protocol/Pair_list_P.txt``, ``Protocol/Split/{FP,FF}/<fold>/
    {same,diff}.txt`` (pairs_per_fold lines each, 1-based ``i,j``), ``cfp_fp.bin``, ``cfp_ff.bin``
    (insightface format, folds in order, same then diff) and ``pyfacex_ground_truth.json`` (per image
    world identity, sample, pose [yaw, pitch, roll], nuisances; "names": "<id>" -> world identity).

    Args:
        world: a :class:`~pyfacex.data.synthetic.SyntheticFaceWorld`.
        out_dir: the protocol's root (created if missing).
        folds: >= 2 identity-disjoint folds (CFP: 10).
        pairs_per_fold: >= 1 same and as many diff pairs per fold and protocol (CFP: 350).
        identities_per_fold: >= 2 people per fold (CFP: 50).
        frontal_per_identity: >= 2 frontal images per person (CFP: 10).
        profile_per_identity: >= 1 profile images per person (CFP: 4).
        frontal_yaw: frontal images have |yaw| <= frontal_yaw degrees, 0..90.
        profile_yaw: (lo, hi): profile images have lo <= |yaw| <= hi degrees, within 0..90.
        seed, progress, quality: as for every writer (:mod:`pyfacex.data.synthetic.protocols`).
    Returns:
        ``Path(out_dir)``.
    Raises:
        ValueError naming the argument (sizes out of range, more pairs than a fold's people allow).
    """
    parameters = dict(folds=C.check_int("folds", folds, 2),
                      pairs_per_fold=C.check_int("pairs_per_fold", pairs_per_fold, 1),
                      identities_per_fold=C.check_int("identities_per_fold", identities_per_fold, 2),
                      frontal_per_identity=C.check_int("frontal_per_identity", frontal_per_identity, 2),
                      profile_per_identity=C.check_int("profile_per_identity", profile_per_identity, 1),
                      frontal_yaw=C.check_number("frontal_yaw", frontal_yaw, 0.0, 90.0),
                      profile_yaw=list(C.check_span("profile_yaw", profile_yaw, 0.0, 90.0)),
                      quality=C.check_quality(quality))
    generator = C.make_generator(seed)
    n, nf, npr = identities_per_fold, frontal_per_identity, profile_per_identity
    splits = {"FP": [], "FF": []}  # per fold (same, diff), pool indices
    for _ in range(folds):
        for name, images_b, symmetric in (("FP", npr, False), ("FF", nf, True)):
            splits[name].append(tuple(
                C.draw_pairs(pairs_per_fold, n, nf, images_b, genuine=genuine, symmetric=symmetric,
                             generator=generator, argument="pairs_per_fold") for genuine in (True, False)))
    identities = C.draw_identities(world, folds * n, generator)
    root = C.prepare_root(out_dir)
    base = C.sample_base(generator)
    digits = max(3, len(str(len(identities))))

    def image(person: int, view: str, number: int) -> str:  # person 0-based, number 0-based
        return f"Data/Images/{person + 1:0{digits}d}/{view}/{number + 1:02d}.jpg"

    frontal = [image(p, "frontal", j) for p in range(len(identities)) for j in range(nf)]
    profile = [image(p, "profile", j) for p in range(len(identities)) for j in range(npr)]
    frontal_yaws = C.uniform(generator, len(frontal), -frontal_yaw, frontal_yaw)
    sides = C.integers(generator, len(profile), 0, 1)
    magnitudes = C.uniform(generator, len(profile), *profile_yaw)
    profile_yaws = [(1 - 2 * side) * yaw for side, yaw in zip(sides, magnitudes)]
    stills = [C.Still(path, identities[i // nf], base + i % nf, {"yaw": yaw})
              for i, (path, yaw) in enumerate(zip(frontal, frontal_yaws))]
    stills += [C.Still(path, identities[i // npr], base + nf + i % npr, {"yaw": yaw})
               for i, (path, yaw) in enumerate(zip(profile, profile_yaws))]
    rendered = C.render_stills(world, root, stills, quality=quality, progress=progress, desc="CFP-like")

    C.write_lines(root / "Data/list_names.txt", [C.person_name(i) for i in identities])
    C.write_lines(root / "Protocol/Pair_list_F.txt", [f"{i + 1} ../{path}" for i, path in enumerate(frontal)])
    C.write_lines(root / "Protocol/Pair_list_P.txt", [f"{i + 1} ../{path}" for i, path in enumerate(profile)])
    for name, lists in splits.items():
        side_b, k_b = (profile, npr) if name == "FP" else (frontal, nf)
        bin_pairs = []
        for fold, blocks in enumerate(lists):
            for label, pairs in zip(("same", "diff"), blocks):
                # pool index -> 0-based row of Pair_list_F / Pair_list_P
                rows = sorted(((fold * n + p.id_a) * nf + p.image_a, (fold * n + p.id_b) * k_b + p.image_b)
                              for p in pairs)
                C.write_lines(root / f"Protocol/Split/{name}/{fold + 1:02d}/{label}.txt",
                              [f"{a + 1},{b + 1}" for a, b in rows])
                bin_pairs += [(frontal[a], side_b[b], label == "same") for a, b in rows]
        C.write_pairs_bin(root, f"cfp_{name.lower()}.bin", bin_pairs)
    C.write_ground_truth(root, "cfp", seed, parameters, rendered,
                         names={f"{p + 1:0{digits}d}": i for p, i in enumerate(identities)})
    return root
