"""Publish finished reproductions into the repository: ``docs/reproductions/`` and the README summary.

For every registered paper whose full run has a ``results.json`` under ``--runs`` (``runs/reproduce/<paper>``):

- ``docs/reproductions/<paper>.json``: the run's results.json; ``docs/reproductions/<paper>/*.png``: its plots;
- ``docs/reproductions/<paper>.md``: the generated part (the run's results.md, plot links pointing at
  ``<paper>/``) is rewritten between the ``<!-- results:begin -->`` / ``<!-- results:end -->`` markers; the
  text around them (the pilot's reading, what was scaled down, the look into a claim that did not
  reproduce) is written by hand and kept. A missing file is created with the markers alone;
- the pilot (``runs/reproduce/<paper>-pilot/pilot.md`` and ``.json``), when present and not yet
  published, beside it as ``<paper>-pilot.md`` / ``<paper>-pilot.json`` (a published pilot is kept);
- README.md: the table between ``<!-- reproductions:begin -->`` and ``<!-- reproductions:end -->`` gets one
  row per claim of every published paper: the claim, the paper's two numbers, ours (mean ± 95 % CI
  half-width) and the paired difference with its CI, the verdict, and the world's shortcut floors on
  that metric.

    python scripts/publish_reproductions.py                 # every paper with a finished full run
    python scripts/publish_reproductions.py --papers lgaf   # some of them
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

from pyfacex.reproduce import get_spec, list_specs
from pyfacex.reproduce.results import claim_text

ROOT = Path(__file__).resolve().parent.parent
RESULTS_MARKERS = ("<!-- results:begin -->", "<!-- results:end -->")
README_MARKERS = ("<!-- reproductions:begin -->", "<!-- reproductions:end -->")


def _replace_between(text: str, markers: tuple[str, str], body: str, where: str) -> str:
    begin, end = markers
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise SystemExit(f"{where}: expected one {begin} followed by one {end}")
    head, rest = text.split(begin)
    return f"{head}{begin}\n{body.strip()}\n{end}{rest.split(end, 1)[1]}"


def _number(value, signed=False) -> str:
    return "–" if value is None else (f"{value:+.2f}" if signed else f"{value:.2f}")


def _ours(entry: dict) -> str:
    if not entry.get("n"):
        return "–"
    return _number(entry["mean"]) if entry["n"] < 2 else f"{_number(entry['mean'])} ± {_number(entry['half_width'])}"


def publish_paper(paper: str, runs: Path, docs: Path) -> dict | None:
    """Copy one paper's run into ``docs``; its results document, or None when it has no full run."""
    run = runs / paper
    if not (run / "results.json").is_file():
        return None
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    if results["run"]["quick"]:
        raise SystemExit(f"{run}: a --quick run; publish a full run (>= 3 seeds)")
    images = docs / paper
    if images.exists():
        shutil.rmtree(images)
    images.mkdir(parents=True)
    for png in sorted(run.glob("*.png")):
        shutil.copy2(png, images / png.name)
    shutil.copy2(run / "results.json", docs / f"{paper}.json")
    generated = (run / "results.md").read_text(encoding="utf-8")
    generated = re.sub(r"!\[([^\]]*)\]\(([^)/]+\.png)\)", rf"![\1]({paper}/\2)", generated)
    generated = re.sub(r"^# ", "## ", generated, flags=re.M)   # under the page's own title
    generated = re.sub(r"^## (Results|Claims|Plots)$", r"### \1", generated, flags=re.M)
    page = docs / f"{paper}.md"
    text = page.read_text(encoding="utf-8") if page.is_file() else \
        f"# {results['paper']}: reproduction\n\n{RESULTS_MARKERS[0]}\n{RESULTS_MARKERS[1]}\n"
    page.write_text(_replace_between(text, RESULTS_MARKERS, generated, str(page)), encoding="utf-8")
    # The pilot is published once, with the world it chose and before the full run; the published copy
    # may carry notes added by hand since, so a later publish never overwrites it.
    pilot = runs / f"{paper}-pilot"
    for suffix in ("md", "json"):
        published = docs / f"{paper}-pilot.{suffix}"
        if (pilot / f"pilot.{suffix}").is_file() and not published.exists():
            shutil.copy2(pilot / f"pilot.{suffix}", published)
    return results


def summary_table(published: dict[str, dict]) -> str:
    """The README rows: one per claim of every published paper."""
    lines = ["| paper | claim | paper's numbers | ours (mean ± 95 % CI) | Δ ours [95 % CI] | verdict "
             "| shortcut floors |",
             "|---|---|---|---|---|---|---|"]
    for paper, results in published.items():
        seeds = len(results["run"]["seeds"])
        for claim in results["claims"]:
            metric = claim["metric"]
            variant, baseline = results["variants"][claim["variant"]], results["variants"][claim["baseline"]]
            theirs = claim["paper"]
            numbers = "–" if theirs["variant"] is None or theirs["baseline"] is None else \
                f"{_number(theirs['variant'])} vs {_number(theirs['baseline'])}"
            difference = claim["difference"]
            delta = "–" if difference is None else (_number(difference["mean"], True) if difference["n"] < 2 else
                                                    f"{_number(difference['mean'], True)} "
                                                    f"[{_number(difference['low'], True)}, "
                                                    f"{_number(difference['high'], True)}]")
            floors = ", ".join(f"{name} {_number(row[metric].get('mean'))}" for name, row in results["floors"].items()
                               if row[metric].get("n"))
            lines.append(f"| [{paper}](docs/reproductions/{paper}.md) | {claim_text(claim)} | {numbers} | "
                         f"{_ours(variant[metric])} vs {_ours(baseline[metric])} | {delta} | {claim['verdict']} "
                         f"({seeds} seeds) | {floors or '–'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--papers", nargs="+", choices=list_specs(), default=list_specs())
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "reproduce")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "reproductions")
    args = parser.parse_args()
    args.docs.mkdir(parents=True, exist_ok=True)
    for paper in args.papers:
        get_spec(paper)   # a registered, well-formed spec
        if publish_paper(paper, args.runs, args.docs) is None:
            print(f"{paper}: no full run under {args.runs / paper}, skipped")
        else:
            print(f"{paper}: published into {args.docs}")
    published = {paper: json.loads((args.docs / f"{paper}.json").read_text(encoding="utf-8"))
                 for paper in list_specs() if (args.docs / f"{paper}.json").is_file()}
    readme = ROOT / "README.md"
    readme.write_text(_replace_between(readme.read_text(encoding="utf-8"), README_MARKERS,
                                       summary_table(published), "README.md"), encoding="utf-8")
    print(f"README.md: {sum(len(r['claims']) for r in published.values())} claims of {len(published)} papers")


if __name__ == "__main__":
    main()
