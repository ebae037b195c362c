"""From finished cells to the published results: per-variant summaries over seeds, per-claim paired
differences and verdicts (``results.json``), and the paper-shaped table (``results.md``)."""
from __future__ import annotations

import math
from collections.abc import Mapping

from ..eval.report import ResultsTable
from .spec import ExperimentSpec
from .stats import VERDICTS, paired, summarize, verdict

__all__ = ["NOT_RUN", "metric_values", "aggregate", "stage_evaluations", "claim_text", "results_markdown"]

NOT_RUN = "not run"
"""The verdict of a claim whose two variants share no finished seed yet."""


def metric_values(spec: ExperimentSpec, cells: Mapping[str, Mapping[int, dict]]) -> dict[str, dict[str, dict]]:
    """row -> metric name -> {seed: value in the metric's scaled unit} for every row (variant or floor)
    of ``cells`` (row -> seed -> cell), from the cells' raw protocol metrics (a metric the protocol left
    undefined, None in the cell, is left out); a metric with ``minus`` is the difference of its key
    between its two evaluations.

    Raises:
        ValueError naming ``metrics[k].key`` when a cell's evaluation has no such metric.
    """
    out: dict[str, dict[str, dict]] = {}
    for row, by_seed in cells.items():
        per_metric = out.setdefault(row, {m.name: {} for m in spec.metrics})
        for seed, cell in sorted(by_seed.items()):
            for k, metric in enumerate(spec.metrics):
                values = []
                for evaluation in (metric.evaluation, metric.minus) if metric.minus else (metric.evaluation,):
                    measured = cell["evaluations"][evaluation]["metrics"]
                    if metric.key not in measured:
                        raise ValueError(f"metrics[{k}].key: {metric.key!r} is not a metric of evaluation "
                                         f"{evaluation!r}; it has {', '.join(measured)}")
                    values.append(measured[metric.key])
                if None not in values:
                    per_metric[metric.name][seed] = (values[0] - sum(values[1:])) * metric.scale
    return out


def _summaries(spec: ExperimentSpec, values: Mapping[str, Mapping[int, float]], paper: Mapping[str, float]) -> dict:
    """metric -> {values (seed -> value), n, mean, std, half_width, low, high, paper} of one row."""
    out = {}
    for metric in spec.metrics:
        by_seed = values.get(metric.name, {})
        entry = {"values": {str(s): v for s, v in by_seed.items()}}
        if by_seed:
            entry.update(summarize(list(by_seed.values())).as_dict())
        entry["paper"] = paper.get(metric.name)
        out[metric.name] = entry
    return out


def aggregate(spec: ExperimentSpec, cells: Mapping[str, Mapping[int, dict]],
              floors: Mapping[str, Mapping[int, dict]] | None = None) -> dict:
    """The ``variants``, ``floors`` and ``claims`` sections of ``results.json``.

    ``variants`` (and ``floors``, the shortcut floors' rows): name -> metric -> {``values`` (seed ->
    value), ``n``, ``mean``, ``std``, ``half_width``, ``low``, ``high`` (95 % Student-t CI),
    ``paper``}. ``claims``: one entry per claim with the paper's numbers, the seeds both variants
    finished, the oriented paired differences (positive = the claimed variant is better), their summary
    and the verdict (:func:`pyfacex.reproduce.stats.verdict`, or :data:`NOT_RUN`).
    """
    values = metric_values(spec, cells)
    floor_values = metric_values(spec, floors or {})
    variants = {v.name: _summaries(spec, values.get(v.name, {}), v.paper) for v in spec.variants}
    floor_rows = {name: _summaries(spec, floor_values[name], {}) for name in floor_values}
    claims = []
    for claim in spec.claims:
        metric = spec.metric(claim.metric)
        sign = 1.0 if metric.higher_is_better else -1.0
        paper_claimed = spec.variant(claim.variant).paper.get(claim.metric)
        paper_base = spec.variant(claim.baseline).paper.get(claim.metric)
        entry = {"variant": claim.variant, "baseline": claim.baseline, "metric": claim.metric,
                 "direction": claim.direction, "margin": claim.margin, "note": claim.note,
                 "paper": {"variant": paper_claimed, "baseline": paper_base,
                           "difference": None if paper_claimed is None or paper_base is None
                           else sign * (paper_claimed - paper_base)}}
        claimed = values.get(claim.variant, {}).get(claim.metric, {})
        base = values.get(claim.baseline, {}).get(claim.metric, {})
        if set(claimed) & set(base):
            result = paired({s: sign * v for s, v in claimed.items()}, {s: sign * v for s, v in base.items()})
            entry.update(seeds=list(result.seeds), differences=list(result.differences),
                         difference=result.summary.as_dict(),
                         verdict=verdict(result.summary, claim.direction, claim.margin))
        else:
            entry.update(seeds=[], differences=[], difference=None, verdict=NOT_RUN)
        claims.append(entry)
    return {"variants": variants, "floors": floor_rows, "claims": claims}


def stage_evaluations(stages: Mapping[str, Mapping]) -> dict[str, dict[str, dict]]:
    """The ``stage_evaluations`` section of ``results.json``: stage -> metric -> {``values`` (seed ->
    value), ``n``, ``mean``, ``std``, ``half_width``, ``low``, ``high``}, the evaluation of each stage's
    final model file on the stage trainer's own held-out data (the ``eval/<metric>`` values its
    ``fit`` returned, e.g. a landmark network's ``nme`` on held-out faces), from ``stages`` (stage ->
    seed -> its ``stage.json`` record). Stages that evaluate nothing are left out."""
    out: dict[str, dict[str, dict]] = {}
    for stage, by_seed in stages.items():
        values: dict[str, dict[str, float]] = {}
        for seed, record in sorted(by_seed.items(), key=lambda item: int(item[0])):
            for key, value in (record.get("train") or {}).items():
                if key.startswith("eval/") and value is not None:
                    values.setdefault(key[len("eval/"):], {})[str(seed)] = value
        if values:
            out[stage] = {metric: {"values": by_metric, **summarize(list(by_metric.values())).as_dict()}
                          for metric, by_metric in values.items()}
    return out


def _number(value: float | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _ours(entry: Mapping) -> str:
    if not entry.get("n"):
        return "–"
    if entry["n"] == 1:
        return _number(entry["mean"])
    return f"{_number(entry['mean'])} ± {_number(entry['half_width'])}"


def claim_text(claim: Mapping) -> str:
    """``"lgaf > gfe on TinyFace rank-1"``, ``"lgaf >= gfe − 0.5 on LFW"`` (the claim in one line)."""
    margin = f" − {claim['margin']:g}" if claim["direction"] == ">=" and claim["margin"] else ""
    return f"{claim['variant']} {claim['direction']} {claim['baseline']}{margin} on {claim['metric']}"


def results_markdown(spec: ExperimentSpec, results: Mapping, notes: tuple[str, ...] = (),
                     plots: tuple[str, ...] = ()) -> str:
    """``results.md``: the run's record, the table laid out like the paper's (rows = variants, per
    metric our mean ± 95 % CI half-width over seeds beside the paper's number), the claims with
    their verdicts, and the ``plots`` (PNG file names beside it) as images."""
    run = results["run"]
    seeds = run["seeds"]
    lines = [f"# {spec.paper}: reproduction on the synthetic face world", ""]
    if spec.description:
        lines += [spec.description.strip(), ""]
    git = run.get("git") or {}
    commit = git.get("commit", "unknown") + (" (uncommitted changes)" if git.get("dirty") else "")
    machine = run["machine"]
    lines += [f"- command: `{run['command']}`", f"- commit: {commit}",
              f"- machine: {machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}",
              f"- seeds: {len(seeds)} ({'quick mode' if run['quick'] else 'full run'}); wall time of this "
              f"invocation {run['wall_time_s'] / 60:.1f} min, all cells {run['cells_seconds'] / 60:.1f} min", ""]
    table = ResultsTable(index="variant")
    for variant in spec.variants:
        row = {}
        for metric in spec.metrics:
            entry = results["variants"][variant.name][metric.name]
            row[f"{metric.name} (ours)"] = _ours(entry)
            row[f"{metric.name} (paper)"] = _number(entry["paper"])
        table.add(variant.name, row)
    for name, floor in results.get("floors", {}).items():
        table.add(f"floor: {name}", {column: value for metric in spec.metrics
                                     for column, value in ((f"{metric.name} (ours)", _ours(floor[metric.name])),
                                                           (f"{metric.name} (paper)", "–"))})
    lines += ["## Results", "", f"Ours: mean ± half-width of the 95 % Student-t interval over {len(seeds)} seed(s) "
              "(one seed: the value alone); paper: the paper's own number on the real benchmark, for reference. "
              "The floor rows are this world's shortcut floors, embedders that know nothing about faces: "
              "4×4 mean-colour cells, and an untrained network (one per seed).",
              "", table.to_markdown(precision=2), ""]
    if results.get("stage_evaluations"):
        stages = ResultsTable(index="stage")
        for stage, metrics in results["stage_evaluations"].items():
            stages.add(stage, {metric: f"{entry['mean']:.4g}" if entry["n"] == 1 else
                               f"{entry['mean']:.4g} ± {entry['half_width']:.2g}" for metric, entry in metrics.items()})
        lines += ["## Stages", "", "Each pre-trained stage's final model (the file the rows use) on its trainer's own "
                  "held-out data (e.g. a landmark network's NME on held-out faces, lower is better): mean ± "
                  "half-width of the 95 % Student-t interval over seeds.", "", stages.to_markdown(), ""]
    if results["claims"]:
        claims = ResultsTable(["paper Δ", "ours Δ (95 % CI)", "seeds", "verdict"], index="claim")
        for claim in results["claims"]:
            difference = claim["difference"]
            if difference is None:
                ours = "–"
            elif difference["n"] < 2:
                ours = _number(difference["mean"], True)
            else:
                ours = (f"{_number(difference['mean'], True)} [{_number(difference['low'], True)}, "
                        f"{_number(difference['high'], True)}]")
            claims.add(claim_text(claim), {"paper Δ": _number(claim["paper"]["difference"], True),
                                           "ours Δ (95 % CI)": ours, "seeds": len(claim["seeds"]),
                                           "verdict": claim["verdict"]})
        lines += ["## Claims", "", "Δ: the claimed variant minus the baseline, paired by seed (positive = better; "
                  "for a lower-is-better metric the sign is flipped). "
                  f"Verdicts: **{VERDICTS[0]}** when the 95 % CI of Δ lies above 0 (for `>=` claims: above "
                  f"−margin), **{VERDICTS[1]}** when the mean does but the interval does not (or one seed), "
                  f"**{VERDICTS[2]}** otherwise.", "", claims.to_markdown(precision=2), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{name}]({name})" for name in plots] + [""]
    for note in notes:
        lines += [f"Note: {note}", ""]
    return "\n".join(lines)
