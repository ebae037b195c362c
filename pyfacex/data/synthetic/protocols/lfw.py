"""LFW-like verification protocol in LFW's own layout (View 2: ``pairs.txt``).

The real format (LFW README, vis-www.cs.umass.edu/lfw/README.txt, sections 1 and 3c; readers such
as scikit-learn's ``fetch_lfw_pairs`` and the MATLAB/Python loaders in public face-recognition code):

- images ``lfw/<name>/<name>_<xxxx>.jpg``, ``xxxx`` the image number (1-based) padded to 4 digits,
  names with underscores instead of spaces (``George_W_Bush``);
- ``pairs.txt``: a first line ``<folds>\\t<n>`` (``10\\t300``), then for each fold ``n`` matched lines
  ``name\\tn1\\tn2`` followed by ``n`` mismatched lines ``name1\\tn1\\tname2\\tn2``, tab-separated;
- the folds are mutually exclusive in people; matched pairs are two different images of one person;
  in the release the lines of a block are sorted by name.
- insightface's ``lfw.bin`` (the same 6000 pairs as 112×112 aligned crops) is written next to it:
  see :func:`write_lfw_like`.

Synthetic mapping: the k-th world test identity is the person ``Person_<k:06d>``; each fold draws its own
pool of identities (disjoint across folds), each with ``images_per_identity`` images rendered with
the world's own random nuisances; the pairs are distinct within a fold.
"""
from __future__ import annotations

import os
from pathlib import Path

from . import _common as C

__all__ = ["write_lfw_like"]


def image_path(name: str, number: int) -> str:
    """Relative path of image ``number`` (1-based) of person ``name``."""
    return f"lfw/{name}/{name}_{number:04d}.jpg"


def write_lfw_like(world, out_dir: str | os.PathLike, folds: int = 10, pairs_per_fold: int = 300,
                   identities_per_fold: int = 100, images_per_identity: int = 4, seed: int = 0,
                   progress: bool = True, quality: int = 95) -> Path:
    """Write an LFW-like View 2 protocol drawn from ``world``'s test identities.

    Writes under ``out_dir``: ``lfw/<name>/<name>_<nnnn>.jpg`` (folds × identities_per_fold ×
    images_per_identity images of the world's size), ``pairs.txt`` (header ``folds\\tpairs_per_fold``,
    then per fold pairs_per_fold matched and pairs_per_fold mismatched lines), ``lfw.bin``
    (insightface verification format, pairs in ``pairs.txt`` order) and
    ``pyfacex_ground_truth.json`` (per image: world identity, sample, pose, nuisances; "names":
    person name -> world identity).

    Args:
        world: a :class:`~pyfacex.data.synthetic.SyntheticFaceWorld` (uses ``identities("test", n)``
            and ``render``).
        out_dir: the protocol's root (created if missing).
        folds: >= 2 (LFW: 10).
        pairs_per_fold: >= 1 matched and as many mismatched pairs per fold (LFW: 300).
        identities_per_fold: >= 2 people per fold.
        images_per_identity: >= 2 images per person.
        seed, progress, quality: as for every writer (:mod:`pyfacex.data.synthetic.protocols`).
    Returns:
        ``Path(out_dir)``.
    Raises:
        ValueError naming the argument: sizes out of range, or more pairs than the pools allow.
    """
    parameters = dict(folds=C.check_int("folds", folds, 2),
                      pairs_per_fold=C.check_int("pairs_per_fold", pairs_per_fold, 1),
                      identities_per_fold=C.check_int("identities_per_fold", identities_per_fold, 2),
                      images_per_identity=C.check_int("images_per_identity", images_per_identity, 2),
                      quality=C.check_quality(quality))
    generator = C.make_generator(seed)
    k, per_fold = images_per_identity, identities_per_fold
    blocks = []  # per fold: (matched, mismatched) pairs of pool indices, drawn before any rendering
    for _ in range(folds):
        blocks.append((C.draw_pairs(pairs_per_fold, per_fold, k, k, genuine=True, symmetric=True,
                                    generator=generator, argument="pairs_per_fold"),
                       C.draw_pairs(pairs_per_fold, per_fold, k, k, genuine=False, symmetric=True,
                                    generator=generator, argument="pairs_per_fold")))
    identities = C.draw_identities(world, folds * per_fold, generator)
    root = C.prepare_root(out_dir)
    base = C.sample_base(generator)

    stills = [C.Still(image_path(C.person_name(i), j + 1), i, base + j) for i in identities for j in range(k)]
    rendered = C.render_stills(world, root, stills, quality=quality, progress=progress, desc="LFW-like")

    lines, bin_pairs = [f"{folds}\t{pairs_per_fold}"], []
    for fold, (matched, mismatched) in enumerate(blocks):
        pool = [C.person_name(i) for i in identities[fold * per_fold:(fold + 1) * per_fold]]
        same = sorted((pool[p.id_a], p.image_a + 1, p.image_b + 1) for p in matched)
        # the release puts the alphabetically first person of a mismatched pair first
        diff = sorted(min(a, b) + max(a, b) for a, b in (((pool[p.id_a], p.image_a + 1), (pool[p.id_b], p.image_b + 1))
                                                          for p in mismatched))
        lines += [f"{n}\t{a}\t{b}" for n, a, b in same] + [f"{n}\t{a}\t{m}\t{b}" for n, a, m, b in diff]
        bin_pairs += [(image_path(n, a), image_path(n, b), True) for n, a, b in same]
        bin_pairs += [(image_path(n, a), image_path(m, b), False) for n, a, m, b in diff]
    C.write_lines(root / "pairs.txt", lines)
    C.write_pairs_bin(root, "lfw.bin", bin_pairs)
    C.write_ground_truth(root, "lfw", seed, parameters, rendered,
                         names={C.person_name(i): i for i in identities})
    return root
