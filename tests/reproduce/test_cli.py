"""``pyfacex reproduce``: --list, a bad PAPER, and a quick run of the micro spec."""
import json

from pyfacex.cli import main
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
    assert printed.count("finished before, skipped") == 3 and ": training" not in printed
