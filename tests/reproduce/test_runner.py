"""The runner on the micro spec (2 variants × 2 seeds, a stage, a few steps): cells, aggregation,
resume after an interruption, and the refusal to mix cells of other settings."""
import json
import math

import pytest

from pyfacex.data.synthetic.rendered_data import settings_key
from pyfacex.reproduce import VERDICTS, get_spec, run_spec
from pyfacex.reproduce import runner as runner_module
from pyfacex.reproduce.stats import paired, summarize, verdict

SPEC = get_spec("_micro")


class _Interrupted(Exception):
    pass


@pytest.fixture
def trainings(monkeypatch):
    """Count (and record the configs of) the trainers the runner creates; ``stop_after`` interrupts."""
    calls = {"configs": [], "stop_after": None}
    create = runner_module.create_trainer

    def counting(config):
        if calls["stop_after"] is not None and len(calls["configs"]) == calls["stop_after"]:
            raise _Interrupted
        calls["configs"].append(config)
        return create(config)

    monkeypatch.setattr(runner_module, "create_trainer", counting)
    return calls


def test_micro_spec_interrupted_then_resumed(tmp_path, trainings):
    out, cache = tmp_path / "out", tmp_path / "cache"
    lines = []
    # seed-major order: stage s0, arcface s0, finetuned s0, stage s1, ... - stop before the 5th training
    trainings["stop_after"] = 4
    with pytest.raises(_Interrupted):
        run_spec(SPEC, out, cache=cache, progress=False, log=lines.append)
    finished = sorted(p.relative_to(out).as_posix() for p in (out / "cells").rglob("*.json"))
    assert finished == ["cells/arcface/seed0.json", "cells/finetuned/seed0.json"]
    stamps = {p: p.stat().st_mtime_ns for p in [*(out / "cells").rglob("*.json"), out / "floors" / "seed0.json"]}

    trainings["stop_after"] = None
    results = run_spec(SPEC, out, cache=cache, progress=False, log=lines.append, command="pyfacex reproduce _micro")
    # nothing finished was trained again: 4 before the interruption + the 2 missing cells
    assert len(trainings["configs"]) == 6
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert any("arcface, seed 0: finished before, skipped" in line for line in lines)

    # the stage's model file reaches the fine-tuned variant of the same seed; the rendered set every cell
    data = cache / settings_key(SPEC.world.data_settings())
    weights = [c.model.weights for c in trainings["configs"] if c.head.kind == "cosface"]
    assert weights == [str(out / "stages" / "extractor" / f"seed{s}" / "model.pt") for s in (0, 1)]
    assert all(c.data.train == str(data / "train") for c in trainings["configs"])
    assert sorted(c.seed for c in trainings["configs"]) == [0, 0, 0, 1, 1, 1]

    # aggregation: recomputed here from the cells on disk
    cells = {v: {s: json.loads((out / "cells" / v / f"seed{s}.json").read_text()) for s in (0, 1)}
             for v in ("arcface", "finetuned")}
    for variant in ("arcface", "finetuned"):
        values = [100 * cells[variant][s]["evaluations"]["lfw@16px"]["metrics"]["accuracy"] for s in (0, 1)]
        entry = results["variants"][variant]["LFW@16px"]
        assert entry["n"] == 2 and entry["mean"] == pytest.approx(sum(values) / 2)
        assert entry["half_width"] == pytest.approx(summarize(values).half_width)
        assert entry["paper"] == SPEC.variant(variant).paper["LFW@16px"]
    eer = {v: {s: 100 * cells[v][s]["evaluations"]["lfw"]["metrics"]["eer"] for s in (0, 1)} for v in cells}
    claim = results["claims"][2]
    assert claim["metric"] == "LFW EER"
    # lower-is-better: the difference is oriented so that positive = the claimed variant is better
    expected = paired({s: -v for s, v in eer["finetuned"].items()}, {s: -v for s, v in eer["arcface"].items()})
    assert claim["differences"] == pytest.approx(list(expected.differences))
    assert claim["verdict"] == verdict(expected.summary, ">") and claim["verdict"] in VERDICTS
    assert claim["paper"]["difference"] is None
    assert results["claims"][1]["paper"]["difference"] == pytest.approx(0.2)

    # the shortcut floors: evaluated once per seed, the mean-colour one the same on every seed
    floors = results["floors"]
    assert set(floors) == {"mean colour", "untrained network"} and floors["mean colour"]["LFW"]["n"] == 2
    assert floors["mean colour"]["LFW"]["std"] == 0.0 and floors["mean colour"]["LFW"]["paper"] is None

    written = json.loads((out / "results.json").read_text())
    assert written["run"]["command"] == "pyfacex reproduce _micro" and written["run"]["seeds"] == [0, 1]
    assert written["run"]["machine"]["torch"] and written["run"]["wall_time_s"] > 0
    assert set(written["cells"]) == {"arcface", "finetuned"} and set(written["stages"]["extractor"]) == {"0", "1"}
    roc = written["cells"]["arcface"]["0"]["evaluations"]["lfw"]["roc"]
    assert roc["far"][-1] == pytest.approx(1.0) and all(0 <= t <= 1 for t in roc["tar"])
    assert all(math.isfinite(v) for v in roc["tar"])
    markdown = (out / "results.md").read_text()
    mean, half = results["variants"]["arcface"]["LFW"]["mean"], results["variants"]["arcface"]["LFW"]["half_width"]
    assert f"| arcface | {mean:.2f} ± {half:.2f} | 99.00 |" in markdown
    assert "finetuned >= arcface − 1 on LFW" in markdown and claim["verdict"] in markdown
    assert "| floor: mean colour |" in markdown and "| floor: untrained network |" in markdown
    pytest.importorskip("matplotlib")
    assert {p.name for p in out.glob("*.png")} == {"bars_LFW.png", "bars_LFW_AUC.png", "bars_LFW_16px.png",
                                                    "bars_LFW_EER.png", "roc_lfw.png", "roc_lfw_16px.png"}
    assert "![roc_lfw.png](roc_lfw.png)" in markdown and "![bars_LFW_EER.png](bars_LFW_EER.png)" in markdown


def test_cells_of_other_settings_are_refused_not_mixed(tmp_path, trainings):
    out, cache = tmp_path / "out", tmp_path / "cache"
    run_spec(SPEC, out, quick=True, cache=cache, progress=False, log=lambda line: None)
    assert len(trainings["configs"]) == 3   # 1 seed: the stage and the two variants
    assert trainings["configs"][0].max_steps == 1 and trainings["configs"][1].epochs == 1   # the quick overrides
    with pytest.raises(ValueError, match="stage.json was finished under other settings"):
        run_spec(SPEC, out, quick=False, cache=cache, progress=False, log=lambda line: None)
    assert len(trainings["configs"]) == 3


def test_parallel_jobs_give_the_serial_records_and_wait_for_their_stage(tmp_path):
    cache, lines = tmp_path / "cache", []
    serial = run_spec(SPEC, tmp_path / "serial", cache=cache, progress=False, log=lambda line: None)
    parallel = run_spec(SPEC, tmp_path / "parallel", cache=cache, progress=False, log=lines.append, jobs=2)
    # one thread per process in both runs (the session fixture; 1 // 2 -> 1): the same computation
    for variant in ("arcface", "finetuned"):
        for seed in ("0", "1"):
            ours, theirs = parallel["cells"][variant][seed], serial["cells"][variant][seed]
            assert ours["fingerprint"] == theirs["fingerprint"]
            for name, evaluation in theirs["evaluations"].items():
                assert ours["evaluations"][name]["metrics"] == pytest.approx(evaluation["metrics"], abs=1e-6)
    assert parallel["claims"][0]["differences"] == pytest.approx(serial["claims"][0]["differences"], abs=1e-4)
    for seed in (0, 1):   # a fine-tuned cell starts only after the stage it loads has finished
        stage_done = next(i for i, line in enumerate(lines) if f"stage extractor, seed {seed}: done" in line)
        cell_started = next(i for i, line in enumerate(lines) if f"finetuned, seed {seed}: training, started" in line)
        assert stage_done < cell_started
    assert sum("workers busy" in line for line in lines) == 8   # 2 seeds x (floors, stage, 2 cells)
    with pytest.raises(ValueError, match="jobs: expected an int >= 1"):
        run_spec(SPEC, tmp_path / "parallel", cache=cache, progress=False, log=lambda line: None, jobs=0)
