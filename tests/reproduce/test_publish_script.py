"""scripts/publish_reproductions.py on a finished micro run: the docs page keeps its hand-written text
and gets the generated part with plot links into its own folder, and the README summary has one row per
claim with the verdict, the paired difference and the world's shortcut floors."""
from __future__ import annotations

import json

import pytest

from pyfacex.reproduce import get_spec, run_spec

from .conftest import load_script


@pytest.fixture(scope="module")
def publish():
    return load_script("publish_reproductions")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A full (2-seed) run of the micro spec, as ``runs/reproduce/_micro`` would hold it."""
    root = tmp_path_factory.mktemp("runs")
    run_spec(get_spec("_micro"), root / "_micro", cache=root / "cache", progress=False, log=lambda line: None)
    return root


def test_publish_keeps_hand_written_text_and_links_plots(publish, runs, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    page = docs / "_micro.md"
    begin, end = publish.RESULTS_MARKERS
    page.write_text(f"# Micro\n\nWritten by hand.\n\n{begin}\nold table\n{end}\n\n## Why\n\nAlso by hand.\n")
    results = publish.publish_paper("_micro", runs, docs)

    text = page.read_text()
    assert text.startswith("# Micro\n\nWritten by hand.\n") and text.endswith("## Why\n\nAlso by hand.\n")
    assert "old table" not in text and text.count(begin) == text.count(end) == 1
    generated = text.split(begin)[1].split(end)[0]
    pngs = sorted(p.name for p in (runs / "_micro").glob("*.png"))
    assert pngs and sorted(p.name for p in (docs / "_micro").iterdir()) == pngs
    for png in pngs:   # the links point into the page's own folder
        assert f"(_micro/{png})" in generated
    assert json.loads((docs / "_micro.json").read_text()) == results
    assert "\n# " not in generated   # the page keeps a single title

    # published twice: the same page (idempotent)
    publish.publish_paper("_micro", runs, docs)
    assert page.read_text() == text


def test_summary_table_has_a_row_per_claim_with_floors(publish, runs, tmp_path):
    results = publish.publish_paper("_micro", runs, tmp_path)
    rows = publish.summary_table({"_micro": results}).splitlines()[2:]
    assert len(rows) == len(results["claims"])
    for row, claim in zip(rows, results["claims"]):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == "[_micro](docs/reproductions/_micro.md)"
        assert claim["variant"] in cells[1] and claim["metric"] in cells[1]
        assert cells[5] == f"{claim['verdict']} (2 seeds)"
        low, high = claim["difference"]["low"], claim["difference"]["high"]
        assert f"[{low:+.2f}, {high:+.2f}]" in cells[4]
        floors = results["floors"]
        assert all(f"{name} {floors[name][claim['metric']]['mean']:.2f}" in cells[6] for name in floors)


def test_quick_runs_and_broken_markers_are_refused(publish, runs, tmp_path):
    quick = tmp_path / "runs"
    run_spec(get_spec("_micro"), quick / "_micro", quick=True, cache=runs / "cache", progress=False,
             log=lambda line: None)
    with pytest.raises(SystemExit, match="a --quick run"):
        publish.publish_paper("_micro", quick, tmp_path)
    assert publish.publish_paper("absent", quick, tmp_path) is None
    with pytest.raises(SystemExit, match="README.md: expected one"):
        publish._replace_between("no markers here", publish.README_MARKERS, "body", "README.md")


def test_the_pilot_is_published_once_and_then_kept(publish, runs, tmp_path):
    pilot = tmp_path / "runs" / "_micro-pilot"
    pilot.mkdir(parents=True)
    (pilot / "pilot.md").write_text("# Pilot\n")
    (tmp_path / "runs" / "_micro").symlink_to(runs / "_micro")
    docs = tmp_path / "docs"
    docs.mkdir()
    publish.publish_paper("_micro", tmp_path / "runs", docs)
    assert (docs / "_micro-pilot.md").read_text() == "# Pilot\n"
    (docs / "_micro-pilot.md").write_text("# Pilot\n\nA note added by hand.\n")
    (pilot / "pilot.md").write_text("# Pilot, rerun\n")
    publish.publish_paper("_micro", tmp_path / "runs", docs)
    assert (docs / "_micro-pilot.md").read_text() == "# Pilot\n\nA note added by hand.\n"
