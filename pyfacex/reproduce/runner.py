"""The runner of a reproduction: renders the spec's world once (cached by a hash of its settings),
trains every (variant, seed) cell with pyfacex's trainers, evaluates it, and publishes the results.

Layout of the output folder ``DIR``:

- ``cells/<variant>/seed<k>.json``: one finished cell (its evaluations' metrics and ROC points, the
  training's last logged values, seconds), written atomically the moment it finishes; a rerun skips
  finished cells, so an interrupted run loses at most the cell in progress (whose trainer resumes
  from its last epoch checkpoint in ``train/<variant>/seed<k>/``);
- ``stages/<stage>/seed<k>/``: the pre-trained networks (``model.pt``, ``stage.json`` when finished);
- ``floors/seed<k>.json``: the world's shortcut floors on every evaluation (mean-colour cells and an
  untrained network of that seed, :mod:`pyfacex.eval.shortcuts`), when the spec asks for them;
- ``results.json``: the run's record (command, commit, machine, seeds, wall time), every cell, per
  variant (and floor) and metric the mean, std and 95 % CI over seeds, per claim the paired differences and the
  verdict (:mod:`pyfacex.reproduce.results`); ``results.md``: the paper-shaped table;
  ``bars_<metric>.png``, ``roc_<evaluation>.png`` (with matplotlib, the ``plot`` extra).

A cell records the fingerprint of what produced it (its recipe, the stages it uses, the data, the
evaluations); finding a finished cell with another fingerprint (the spec changed, or ``--quick``
output reused for a full run) is an error rather than a silent mix.
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import shutil
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch

from ..data.synthetic.rendered_data import render_data, settings_key
from ..eval import evaluate_protocol
from ..eval.metrics import roc, roc_tar_at_far
from ..eval.shortcuts import MEAN_COLOUR, UNTRAINED, mean_colour_embedder, untrained_network
from ..train.checkpoint import atomic_write, embedder_for, load_model
from ..train.config import config_from_dict
from ..train.registry import create_trainer
from .record import run_record
from .results import aggregate, results_markdown, stage_evaluations
from .spec import STAGE_TOKEN, TRAIN_TOKEN, ExperimentSpec, stage_references

__all__ = ["DEFAULT_CACHE", "EVALUATION_SEED", "default_output", "run_spec", "publish"]

DEFAULT_CACHE = Path("runs/reproduce/cache")
"""Where rendered worlds are kept, one folder per settings hash (shared by every spec and run)."""

EVALUATION_SEED = 0
"""Seed of the evaluation-time degradations (``@blurL``): every cell sees the same degraded sets."""

_FAR_STEPS_PER_DECADE = 10


def default_output(name: str, quick: bool) -> Path:
    """``runs/reproduce/<name>`` (``<name>-quick`` in quick mode)."""
    return Path("runs/reproduce") / (f"{name}-quick" if quick else name)


def _write_json(path: Path, document) -> Path:
    text = json.dumps(document, indent=1, allow_nan=False)
    return atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _fingerprint(document) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=list).encode("utf-8")).hexdigest()[:16]


def _resolve(value, train: Path, stages: Mapping[str, Path]):
    """``value`` (a recipe, any nesting) with ``"$train"`` and ``"$stage:NAME"`` replaced by paths."""
    if isinstance(value, str):
        if value == TRAIN_TOKEN:
            return str(train)
        if value.startswith(STAGE_TOKEN):
            return str(stages[value[len(STAGE_TOKEN):]])
        return value
    if isinstance(value, Mapping):
        return {key: _resolve(item, train, stages) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_resolve(item, train, stages) for item in value]
    return value


def _read_finished(path: Path, fingerprint: str) -> dict | None:
    """The finished record at ``path`` (None when absent); an error when another setting made it."""
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("fingerprint") != fingerprint:
        raise ValueError(f"{path} was finished under other settings (the spec changed, or a run with(out) --quick "
                         f"wrote this folder); use another --out, or delete it to rerun")
    return record


def _train(recipe: dict, output: Path, seed: int, fingerprint: str, progress: bool) -> dict:
    """Train ``recipe`` with ``seed`` into ``output``, resuming its last checkpoint when an interrupted
    run of the same fingerprint left one (another fingerprint's folder is cleared); the last logged values."""
    mark = output / "fingerprint"
    if output.exists() and not (mark.is_file() and mark.read_text(encoding="utf-8") == fingerprint):
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)
    mark.write_text(fingerprint, encoding="utf-8")
    config = config_from_dict({**recipe, "seed": seed, "output": str(output), "progress": progress})
    logged = create_trainer(config).fit(resume="auto")
    return {key: _finite(float(value)) for key, value in logged.items() if isinstance(value, (int, float))}


def _roc_points(result) -> dict | None:
    """TAR on a log FAR grid from the decade of 1/impostors to 1 (the curve is averaged over seeds later)."""
    if result.scores is None or result.is_genuine is None or result.is_genuine.all() or not result.is_genuine.any():
        return None
    curve = roc(torch.from_numpy(result.scores), torch.from_numpy(result.is_genuine))
    decades = math.ceil(math.log10(curve.impostors))
    grid = torch.logspace(-decades, 0, decades * _FAR_STEPS_PER_DECADE + 1, dtype=torch.float64)
    return {"far": grid.tolist(), "tar": roc_tar_at_far(curve, grid).tolist()}


def _evaluate(spec: ExperimentSpec, embedder: torch.nn.Module, data: Path, image_size: int | None,
              set_model: torch.nn.Module | None = None) -> dict:
    """Every evaluation of the spec on one image embedder (``set_model``: the whole model, whose own set
    function the template and set protocols may run): name -> {metrics, primary, set_function, roc}."""
    out = {}
    for evaluation in spec.evaluations:
        path = data / "protocols" / evaluation.protocol / evaluation.file
        set_function = evaluation.set_function if set_model is not None else "mean"
        result = evaluate_protocol(f"{evaluation.name}={path}{evaluation.options}", embedder, image_size=image_size,
                                   set_model=set_model, set_function=set_function, seed=EVALUATION_SEED)
        out[evaluation.name] = {"metrics": {key: _finite(value) for key, value in result.metrics.items()},
                                "primary": result.primary, "set_function": result.details.get("set_function"),
                                "roc": _roc_points(result)}
    return out


def _evaluate_model_file(spec: ExperimentSpec, model_file: Path, data: Path) -> dict:
    """:func:`_evaluate` of a trained model file (its embedder, at the file's image size)."""
    whole, info = load_model(model_file)
    return _evaluate(spec, embedder_for(whole).eval(), data, info.get("image_size"), whole)


def _evaluate_floors(spec: ExperimentSpec, data: Path, seed: int) -> dict:
    """The shortcut floors (:mod:`pyfacex.eval.shortcuts`) as cells: row name -> {"evaluations": ...}."""
    size = spec.image_size()
    embedders = {MEAN_COLOUR: mean_colour_embedder(),
                 UNTRAINED: untrained_network(seed, image_size=size, **spec.floor_network)}
    return {name: {"evaluations": _evaluate(spec, embedder, data, size)} for name, embedder in embedders.items()}


@dataclass(frozen=True)
class _Task:
    """One unit of a run: the shortcut floors of a seed, a stage of a seed, or a (variant, seed) cell;
    ``path`` holds its record when finished, ``needs`` the (stage, seed) tasks it waits for."""

    kind: str                 # "floors", "stage" or "cell"
    name: str                 # the stage's or variant's name ("" for the floors)
    seed: int
    path: Path
    fingerprint: str
    needs: tuple[tuple[str, int], ...] = ()
    action: str = "training"  # what the log says it is doing

    @property
    def label(self) -> str:
        return {"floors": f"shortcut floors, seed {self.seed}", "stage": f"stage {self.name}, seed {self.seed}",
                "cell": f"{self.name}, seed {self.seed}"}[self.kind]


def _plan(spec: ExperimentSpec, out: Path, key: str, quick: bool, seeds: list[int],
          stage_recipes: Mapping[str, dict]) -> list[_Task]:
    """Every task of the run in seed-major order (every finished seed gives every claim one more paired
    difference), each with the fingerprint of what produces it."""
    evaluations = [asdict(evaluation) for evaluation in spec.evaluations]
    tasks = []
    for seed in seeds:
        if spec.floors:
            tasks.append(_Task("floors", "", seed, out / "floors" / f"seed{seed}.json", _fingerprint(
                {"data": key, "seed": seed, "evaluations": evaluations, "image_size": spec.image_size(),
                 "network": dict(spec.floor_network)}), action="evaluating"))
        for stage in spec.stages:
            tasks.append(_Task("stage", stage.name, seed, out / "stages" / stage.name / f"seed{seed}" / "stage.json",
                               _fingerprint({"recipe": stage_recipes[stage.name], "data": key, "seed": seed})))
        for variant in spec.variants:
            if variant.stage:   # the row trains nothing: it evaluates the stage's model file
                used = {variant.stage: stage_recipes[variant.stage]}
                fingerprint = _fingerprint({"stage": variant.stage, "stages": used, "data": key, "seed": seed,
                                            "evaluations": evaluations})
            else:
                recipe = spec.cell_recipe(variant.name, quick)
                used = {name: stage_recipes[name] for name in sorted(stage_references(recipe))}
                fingerprint = _fingerprint({"recipe": recipe, "stages": used, "data": key, "seed": seed,
                                            "evaluations": evaluations})
            tasks.append(_Task("cell", variant.name, seed, out / "cells" / variant.name / f"seed{seed}.json",
                               fingerprint, tuple((name, seed) for name in sorted(used)),
                               f"evaluating stage {variant.stage}" if variant.stage else "training"))
    return tasks


def _perform(spec: ExperimentSpec, task: _Task, data: Path, out: Path, quick: bool, progress: bool,
             stage_recipes: Mapping[str, dict]) -> dict:
    """Compute one task; its record (written to ``task.path`` by the caller)."""
    if task.kind == "floors":
        return {"seed": task.seed, "fingerprint": task.fingerprint, "rows": _evaluate_floors(spec, data, task.seed)}
    stage_files = {name: out / "stages" / name / f"seed{task.seed}" / "model.pt" for name in stage_recipes}
    began = time.perf_counter()
    if task.kind == "stage":
        logged = _train(_resolve(stage_recipes[task.name], data / "train", {}), task.path.parent, task.seed,
                        task.fingerprint, progress)
        return {"stage": task.name, "seed": task.seed, "fingerprint": task.fingerprint,
                "seconds": time.perf_counter() - began, "train": logged}
    variant = spec.variant(task.name)
    if variant.stage:
        logged, model_file = {}, stage_files[variant.stage]
    else:
        folder = out / "train" / variant.name / f"seed{task.seed}"
        logged = _train(_resolve(spec.cell_recipe(variant.name, quick), data / "train", stage_files), folder,
                        task.seed, task.fingerprint, progress)
        model_file = folder / "model.pt"
    trained = time.perf_counter() - began
    evaluated = _evaluate_model_file(spec, model_file, data)
    return {"variant": variant.name, "seed": task.seed, "quick": quick, "fingerprint": task.fingerprint,
            "seconds": time.perf_counter() - began, "train_seconds": trained, "train": logged,
            "evaluations": evaluated}


def _summary(task: _Task, record: dict) -> str:
    """What a finished task's log line shows: its primary metrics (a stage: its trainer's evaluations)."""
    if task.kind == "stage":
        return "".join(f"{key[len('eval/'):]} {value:.4g}; " for key, value in record["train"].items()
                       if key.startswith("eval/") and value is not None)
    cells = record["rows"].items() if task.kind == "floors" else [("", record)]
    return "".join(f"{row + ' ' if row else ''}{e} {v['primary']} {v['metrics'][v['primary']]:.4f}; "
                   for row, cell in cells for e, v in cell["evaluations"].items()
                   if v["metrics"][v["primary"]] is not None)


def _set_threads(threads: int) -> None:
    """A worker process' initializer: its share of the machine's threads."""
    torch.set_num_threads(threads)


def _execute(tasks: list[_Task], perform: Callable[[_Task], dict], jobs: int, threads: int,
             log: Callable[[str], None], started: float) -> dict[_Task, dict]:
    """Run the unfinished ``tasks`` (``perform``, picklable when ``jobs`` > 1), at most ``jobs`` at once
    in worker processes of ``threads`` threads each, a task once the stages it needs are finished;
    every task's record."""
    records, pending, total = {}, [], len(tasks)
    for task in tasks:
        record = _read_finished(task.path, task.fingerprint)
        if record is None:
            pending.append(task)
        else:
            records[task] = record
            log(f"[{len(records)}/{total}] {task.label}: finished before, skipped")

    def finished(task: _Task, record: dict, seconds: float) -> None:
        _write_json(task.path, record)   # atomically, the moment it is known: a rerun skips it
        records[task] = record
        log(f"[{len(records)}/{total}] {task.label}: done in {seconds:.1f} s "
            f"({_summary(task, record)}elapsed {time.perf_counter() - started:.0f} s)")

    def ready(task: _Task) -> bool:
        done = {(t.name, t.seed) for t in records if t.kind == "stage"}
        return all(need in done for need in task.needs)

    if jobs == 1:
        for task in pending:
            log(f"[{len(records) + 1}/{total}] {task.label}: {task.action}")
            began = time.perf_counter()
            finished(task, perform(task), time.perf_counter() - began)
        return records
    context = multiprocessing.get_context("spawn")   # fork would copy torch's thread pools and locks
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_set_threads, initargs=(threads,)) as pool:
        running = {}
        while pending or running:
            for task in [t for t in pending if ready(t)][:jobs - len(running)]:
                pending.remove(task)
                log(f"{task.label}: {task.action}, started ({len(running) + 1} of {jobs} workers busy)")
                running[pool.submit(perform, task)] = (task, time.perf_counter())
            if not running:
                raise RuntimeError("tasks wait for stages that never run: " + ", ".join(t.label for t in pending))
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                task, began = running.pop(future)
                finished(task, future.result(), time.perf_counter() - began)
    return records


def run_spec(spec: ExperimentSpec, out: str | Path | None = None, *, quick: bool = False, seeds: int | None = None,
             cache: str | Path = DEFAULT_CACHE, progress: bool = True, command: str | None = None,
             log: Callable[[str], None] = print, jobs: int = 1) -> dict:
    """Run a reproduction (module docstring): render, train and evaluate every unfinished cell, then
    write ``results.json``, ``results.md`` and the plots into ``out``; returns the results document.

    Args:
        spec: the experiment. out: the output folder (default :func:`default_output`).
        quick: the spec's quick mode (``quick_seeds`` seeds, the ``quick`` recipe overrides).
        seeds: how many seeds (0 .. seeds-1) instead of the spec's count.
        cache: the folder of rendered worlds (:data:`DEFAULT_CACHE`).
        progress: the trainers' and renderers' progress bars (off in worker processes).
        command: the command line to record. log: where the per-task progress lines go.
        jobs: how many cells (and stages) train at once, each in a worker process with its share of
            ``torch.get_num_threads()`` threads; a cell starts once its seed's stages are finished. The
            records are the same as a serial run's with that many threads.
    """
    started = time.perf_counter()
    out = Path(out) if out is not None else default_output(spec.name, quick)
    count = spec.quick_seeds if quick else spec.seeds
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ValueError(f"seeds: expected an int >= 1, got {seeds!r}")
        count = seeds
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: expected an int >= 1, got {jobs!r}")
    seed_list = list(range(count))
    record = run_record(command or f"run_spec({spec.name!r}, quick={quick}, seeds={count})")

    settings = spec.world.data_settings()
    key = settings_key(settings)
    log(f"[{spec.name}] world {key}: rendering into {Path(cache) / key} (skipped when cached)")
    data = render_data(Path(cache) / key, settings, progress)

    stage_recipes = {stage.name: spec.stage_recipe(stage, quick) for stage in spec.stages}
    tasks = _plan(spec, out, key, quick, seed_list, stage_recipes)
    perform = partial(_perform, spec, data=data, out=out, quick=quick, progress=progress and jobs == 1,
                      stage_recipes=stage_recipes)
    records = _execute(tasks, perform, jobs, max(1, torch.get_num_threads() // jobs), log, started)
    cells: dict[str, dict[int, dict]] = {}
    floors: dict[str, dict[int, dict]] = {}
    for task in tasks:
        finished = records[task]
        if task.kind == "floors":
            for row, cell in finished["rows"].items():
                floors.setdefault(row, {})[task.seed] = cell
        elif task.kind == "cell":
            cells.setdefault(task.name, {})[task.seed] = finished
    return publish(spec, out, cells, floors, record, quick=quick, seeds=seed_list,
                   wall_time=time.perf_counter() - started, log=log)


def publish(spec: ExperimentSpec, out: Path, cells: Mapping[str, Mapping[int, dict]],
            floors: Mapping[str, Mapping[int, dict]], record: dict, *, quick: bool, seeds: list[int], wall_time: float,
            log: Callable[[str], None] = print) -> dict:
    """Aggregate ``cells`` (variant -> seed -> cell) and ``floors`` (floor row -> seed -> cell) and write
    ``out/results.json``, ``out/results.md`` and the plots; returns the document."""
    from .plots import save_plots

    stages = {}
    for stage in spec.stages:
        for seed in seeds:
            path = out / "stages" / stage.name / f"seed{seed}" / "stage.json"
            if path.is_file():
                stages.setdefault(stage.name, {})[str(seed)] = json.loads(path.read_text(encoding="utf-8"))
    cell_seconds = sum(c["seconds"] for by_seed in cells.values() for c in by_seed.values()) + \
        sum(s["seconds"] for by_seed in stages.values() for s in by_seed.values())
    results = {"spec": spec.name, "paper": spec.paper,
               "run": {**record, "quick": quick, "seeds": seeds, "wall_time_s": wall_time,
                       "cells_seconds": cell_seconds, "world": spec.world.data_settings()},
               **aggregate(spec, cells, floors),
               "stages": stages,
               "stage_evaluations": stage_evaluations(stages),
               "cells": {variant: {str(seed): cell for seed, cell in by_seed.items()}
                         for variant, by_seed in cells.items()}}
    notes = []
    try:
        written = save_plots(spec, results, {**cells, **floors}, out)
    except ImportError as error:
        written = []
        notes.append(f"plots skipped: {error}")
        log(f"[{spec.name}] plots skipped: {error}")
    markdown = results_markdown(spec, results, tuple(notes), tuple(path.name for path in written))
    written = [_write_json(out / "results.json", results),
               atomic_write(out / "results.md", lambda file: file.write(markdown.encode("utf-8")))] + written
    log(f"[{spec.name}] wrote {', '.join(str(p) for p in written)}")
    return results
