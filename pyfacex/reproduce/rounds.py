"""Documented rounds: a published spec rerun with one setting changed, to find out why a claim did not
reproduce (the reproductions' rule: "when a claim does not reproduce, spend one documented round finding
out why: scale, the world, or a defect in pyfacex").

A round keeps the spec's world, stages, seeds, evaluations and metrics, keeps its baseline rows as they
are and replaces the rows under test by copies with the one change merged into their recipes. Its claims
are the spec's, renamed to the round's rows, so the round's ``results.json`` answers the same questions
with the change. The scripts in ``scripts/*_round.py`` build and run them.
"""
from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .spec import ExperimentSpec, SpecError, Variant, merge_recipes


def round_spec(spec: ExperimentSpec, name: str, change: Mapping, rows: Mapping[str, str], keep: Sequence[str],
               note: str, description: str) -> ExperimentSpec:
    """``spec`` with ``keep``'s rows as they are and each ``rows`` entry (round row name -> spec row name)
    a copy of that spec row with ``change`` merged into its recipe and ``note`` appended to its note.

    Claims between rows the round has (after renaming spec rows to their round rows) are kept, renamed;
    the others are dropped. Raises :class:`SpecError` naming an unknown row.
    """
    by_name = {variant.name: variant for variant in spec.variants}
    for field, names in (("keep", list(keep)), ("rows", list(rows.values()))):
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise SpecError(f"{field}: {unknown} are not rows of {spec.name!r} (rows: {sorted(by_name)})")
    variants = [by_name[n] for n in keep]
    for new, original in rows.items():
        row = by_name[original]
        variants.append(Variant(new, merge_recipes(row.recipe, change), paper=row.paper, stage=row.stage,
                                note=f"{row.note}; {note}"))
    renamed = {original: new for new, original in rows.items()}
    present = {variant.name for variant in variants}
    claims = []
    for claim in spec.claims:
        variant, baseline = (renamed.get(claim.variant, claim.variant), renamed.get(claim.baseline, claim.baseline))
        if variant in present and baseline in present:
            claims.append(dataclasses.replace(claim, variant=variant, baseline=baseline))
    return dataclasses.replace(spec, name=name, variants=tuple(variants), claims=tuple(claims),
                               description=description)


def reuse_run(run: Path, out: Path, rows: Sequence[str]) -> list[str]:
    """Copy a finished run's stages, floors and the cells of ``rows`` into the round's folder ``out``, so
    the round skips them (the runner matches them by fingerprint: a changed setting retrains them);
    returns the parts copied. Parts ``out`` already has are left alone."""
    copied = []
    for part in ("stages", "floors", *(f"cells/{row}" for row in rows)):
        if (run / part).is_dir() and not (out / part).exists():
            shutil.copytree(run / part, out / part)
            copied.append(part)
    return copied


def round_main(doc: str, spec_name: str, name: str, change: Mapping, rows: Mapping[str, str], keep: Sequence[str],
               note: str, argv: Sequence[str] | None = None,
               after: Callable[[ExperimentSpec, Path, Path], None] | None = None) -> dict:
    """The command line of a round script (``scripts/*_round.py``, whose module docstring is ``doc``: its
    first paragraph the title, its second the round's description): ``--out DIR --cache DIR [--run DIR]
    [--jobs N]``. With ``--run`` (a finished ``pyfacex reproduce SPEC`` folder) the stages, floors and
    ``keep``'s cells are copied from it (:func:`reuse_run`); then the round's spec (:func:`round_spec`)
    runs into ``--out``, a rerun skipping the finished cells. ``after(spec, out, data)`` then takes the
    round's own readings of the trained models (``data``: the rendered world's folder in the cache).
    Returns the results document."""
    import argparse
    import sys

    from ..data.synthetic.rendered_data import settings_key
    from .runner import run_spec
    from .specs import get_spec

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the round's output folder")
    parser.add_argument("--cache", type=Path, required=True, help="the rendered worlds (a run's --cache)")
    parser.add_argument("--run", type=Path, help=f"a finished `pyfacex reproduce {spec_name}` folder to reuse")
    parser.add_argument("--jobs", type=int, default=1, help="cells at once")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.run is not None:
        reuse_run(args.run, args.out, keep)
    spec = round_spec(get_spec(spec_name), name, change, rows, keep, note, doc.split("\n\n")[1].replace("\n", " "))
    command = " ".join(["python", Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])])
    results = run_spec(spec, args.out, cache=args.cache, jobs=args.jobs, command=command)
    if after is not None:
        after(spec, args.out, args.cache / settings_key(spec.world.data_settings()))
    return results


def evaluation_scores(spec: ExperimentSpec, embedder, data: Path, image_size: int | None) -> dict[str, float]:
    """The primary metric (%) of every evaluation of ``spec`` on an image ``embedder`` (a module, (B, 3, H, W)
    -> (B, E)), computed as the runner computes a cell's: the same protocol files of the rendered world
    ``data``, degradations and evaluation seed, templates and sets by the mean of their images."""
    from .runner import _evaluate

    return _primary_percent(_evaluate(spec, embedder, data, image_size))


def cell_scores(out: Path, row: str, seed: int | str) -> dict[str, float]:
    """The primary metric (%) of every evaluation of a finished cell of the run folder ``out``, as
    :func:`evaluation_scores` gives them."""
    import json

    cell = json.loads((out / "cells" / row / f"seed{seed}.json").read_text(encoding="utf-8"))
    return _primary_percent(cell["evaluations"])


def _primary_percent(evaluations: Mapping[str, dict]) -> dict[str, float]:
    return {name: 100.0 * result["metrics"][result["primary"]] for name, result in evaluations.items()}
