"""``pyfacex reproduce``: --list, a bad PAPER, and a quick run of the micro spec."""
import json

from pyfacex.cli import main
from pyfacex.eval.shortcuts import MEAN_COLOUR, UNTRAINED
from pyfacex.reproduce import get_spec, list_specs
from pyfacex.reproduce import specs as registry


def test_list_shows_the_registered_papers_not_the_private_specs(capsys):
    assert main(["reproduce", "--list"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"{name}\t{get_spec(name).paper}" for name in list_specs()]
    assert not any(line.startswith("_") for line in printed) and "_micro" in list_specs(private=True)


def test_list_says_when_no_paper_is_registered(capsys, monkeypatch):
    monkeypatch.setattr(registry, "_MODULES", {"_micro": "micro"})
    assert main(["reproduce", "--list"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "no paper specs are registered yet" in captured.err


def test_a_bad_paper_is_an_error_naming_it(capsys):
    assert main(["reproduce", "lgaff"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyfacex reproduce: error: PAPER: expected one of the registered specs") and "'lgaff'" in err
    assert main(["reproduce"]) == 2
    assert "PAPER" in capsys.readouterr().err


def test_quick_run_of_the_micro_spec_then_a_rerun_trains_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["reproduce", "_micro", "--quick", "--out", str(out), "--cache", str(tmp_path / "cache")]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["run"]["command"] == f"pyfacex reproduce _micro --quick --out {out}"
    assert results["run"]["quick"] is True and results["run"]["seeds"] == [0]
    assert [c["seeds"] for c in results["claims"]] == [[0]] * 3
    assert all(c["verdict"] != "reproduced" for c in results["claims"])   # one seed is never significant
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("finished before, skipped") == 4 and ": training" not in printed   # floors, stage, 2 cells
    assert "shortcut floors, seed 0: finished before, skipped" in printed


def test_pilot_trains_the_baseline_on_every_candidate_world(tmp_path, capsys):
    out = tmp_path / "pilot"
    assert main(["reproduce", "_micro", "--pilot", "--quick", "--out", str(out),
                 "--cache", str(tmp_path / "cache")]) == 0
    pilot = json.loads((out / "pilot.json").read_text())
    spec = get_spec("_micro")
    assert list(pilot["candidates"]) == list(spec.pilot_worlds) and pilot["variant"] == "arcface"
    for name, candidate in pilot["candidates"].items():
        assert set(candidate["rows"]) == {"arcface", MEAN_COLOUR, UNTRAINED}
        assert candidate["changes"] == spec.pilot_worlds[name]
        results = json.loads((out / name / "results.json").read_text())
        assert list(results["cells"]) == ["arcface"] and results["run"]["world"] == \
            spec.world.replaced(spec.pilot_worlds[name]).data_settings()
    # the two candidates are two worlds: their renders differ, so does a floor on them
    assert pilot["candidates"]["easier"]["rows"][MEAN_COLOUR] != pilot["candidates"]["harder"]["rows"][MEAN_COLOUR]
    # a rerun over the finished cells keeps the minutes they took
    assert main(["reproduce", "_micro", "--pilot", "--quick", "--out", str(out),
                 "--cache", str(tmp_path / "cache")]) == 0
    rerun = json.loads((out / "pilot.json").read_text())
    assert all(c["minutes"] > 0 for c in pilot["candidates"].values())
    assert [c["minutes"] for c in rerun["candidates"].values()] == [c["minutes"] for c in pilot["candidates"].values()]
    markdown = (out / "pilot.md").read_text()
    assert "easier / arcface" in markdown and f"harder / {UNTRAINED}" in markdown
    assert main(["reproduce", "_micro", "--pilot", "--seeds", "2", "--out", str(out)]) == 2
    assert "--seeds: a pilot runs seed 0 only" in capsys.readouterr().err


def test_a_spec_without_pilot_worlds_has_no_pilot(tmp_path, monkeypatch, capsys):
    import dataclasses

    from pyfacex.reproduce import specs as registry_module

    spec = dataclasses.replace(get_spec("_micro"), pilot_worlds={})
    monkeypatch.setattr(registry_module, "get_spec", lambda name: spec)
    monkeypatch.setattr("pyfacex.reproduce.get_spec", lambda name: spec)
    assert main(["reproduce", "_micro", "--pilot", "--out", str(tmp_path)]) == 2
    assert "declares no pilot worlds" in capsys.readouterr().err
