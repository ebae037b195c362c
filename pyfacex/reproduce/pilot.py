"""The pilot of a reproduction: the baseline alone on each candidate world of the spec
(``ExperimentSpec.pilot_worlds``), one seed, with the candidate's shortcut floors, so that the world's
difficulty is chosen from the baseline (far from chance and from the ceiling, the floors far below
it) before any method is trained.

``pyfacex reproduce PAPER --pilot`` writes ``DIR/<candidate>/`` (an ordinary run folder, resumable)
per candidate and ``DIR/pilot.json`` / ``DIR/pilot.md``: per candidate its world changes, the
baseline's and the floors' value of every metric, and the minutes its trainings and evaluations took
(as recorded when they ran: a rerun over finished cells keeps them).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ..eval.report import ResultsTable
from ..eval.shortcuts import MEAN_COLOUR, UNTRAINED
from ..train.checkpoint import atomic_write
from .record import run_record
from .runner import DEFAULT_CACHE, run_spec
from .spec import ExperimentSpec

__all__ = ["default_pilot_output", "run_pilot"]


def default_pilot_output(name: str) -> Path:
    """``runs/reproduce/<name>-pilot``."""
    return Path("runs/reproduce") / f"{name}-pilot"


def _value(row: dict, metric: str) -> float | None:
    return row[metric].get("mean") if row.get(metric, {}).get("n") else None


def run_pilot(spec: ExperimentSpec, out: str | Path | None = None, *, quick: bool = False,
              cache: str | Path = DEFAULT_CACHE, progress: bool = True, command: str | None = None,
              log: Callable[[str], None] = print, jobs: int = 1) -> dict:
    """Run the spec's pilot (module docstring): seed 0 of the pilot variant on every candidate world.

    Args:
        spec: an experiment with ``pilot_worlds``. out: the output folder (default
            :func:`default_pilot_output`). quick: the variant's quick-mode recipe (fewer epochs).
        cache, progress, log, jobs: as :func:`~pyfacex.reproduce.run_spec` (per candidate).
        command: the command line to record.
    Returns:
        The ``pilot.json`` document.
    Raises:
        ValueError naming ``PAPER`` when the spec declares no pilot worlds.
    """
    if not spec.pilot_worlds:
        raise ValueError(f"PAPER: spec {spec.name!r} declares no pilot worlds (ExperimentSpec.pilot_worlds)")
    out = Path(out) if out is not None else default_pilot_output(spec.name)
    record = run_record(command or f"run_pilot({spec.name!r}, quick={quick})")
    candidates = {}
    for name, changes in spec.pilot_worlds.items():
        pilot = spec.pilot_spec(name)
        log(f"[{spec.name} pilot] candidate {name}: {json.dumps(changes, sort_keys=True)}")
        results = run_spec(pilot, out / name, quick=quick, seeds=1, cache=cache, progress=progress,
                           command=record["command"], log=log, jobs=jobs)
        baseline = pilot.variants[0].name
        candidates[name] = {"changes": changes, "minutes": results["run"]["cells_seconds"] / 60,
                            "rows": {row: {m.name: _value(values, m.name) for m in spec.metrics}
                                     for row, values in [(baseline, results["variants"][baseline]),
                                                         *results["floors"].items()]}}
    document = {"spec": spec.name, "variant": spec.pilot_spec(next(iter(spec.pilot_worlds))).variants[0].name,
                "quick": quick, "run": record, "chosen_world": spec.world.data_settings(), "candidates": candidates}
    (out / "pilot.json").write_text(json.dumps(document, indent=1, allow_nan=False), encoding="utf-8")
    atomic_write(out / "pilot.md", lambda file: file.write(_markdown(spec, document).encode("utf-8")))
    log(f"[{spec.name} pilot] wrote {out / 'pilot.md'}, {out / 'pilot.json'}")
    return document


def _markdown(spec: ExperimentSpec, document: dict) -> str:
    """``pilot.md``: one row per (candidate, row), one column per metric."""
    table = ResultsTable(["world changes", *(m.name for m in spec.metrics), "minutes"], index="candidate / row")
    for name, candidate in document["candidates"].items():
        for row, values in candidate["rows"].items():
            table.add(f"{name} / {row}", {"world changes": json.dumps(candidate["changes"], sort_keys=True),
                                          **{m: "–" if v is None else f"{v:.2f}" for m, v in values.items()},
                                          "minutes": f"{candidate['minutes']:.1f}"})
    run = document["run"]
    return "\n".join([f"# Pilot of {spec.name}: the baseline '{document['variant']}' alone, seed 0", "",
                      f"- command: `{run['command']}`", f"- commit: {(run.get('git') or {}).get('commit', 'unknown')}",
                      f"- machine: {run['machine']['cpu']}, {run['machine']['threads']} threads", "",
                      f"Floors: `{MEAN_COLOUR}` (4×4 mean-colour cells) and `{UNTRAINED}` (an untrained network); "
                      "the world is chosen where the baseline is far from chance and ceiling and the floors far "
                      "below it.", "", table.to_markdown(precision=2), ""])
