import json
import sys

import pytest
import torch

from pyfacex.data import decode_image
from pyfacex.eval import metrics
from pyfacex.eval.report import ResultsTable, save_cmc_png, save_roc_png, score_metrics, tar_column


def _scores(n=400, seed=0):
    generator = torch.Generator().manual_seed(seed)
    genuine = torch.rand(n, generator=generator) < 0.4
    return torch.randn(n, generator=generator, dtype=torch.float64) + 2 * genuine, genuine


def _table():
    scores, genuine = _scores()
    table = ResultsTable(["accuracy"], index="model", title="LFW-like")
    table.add("iresnet50", score_metrics(scores, genuine, fars=(1e-3, 1e-1), conventions=("interpolated", "nearest")),
              accuracy=(0.99523, 0.00311), pairs=6000)
    table.add("iresnet100-longer-name", {"AUC": 0.5}, note="a|b")
    return table


def test_tar_column_names_the_convention():
    assert tar_column(1e-4) == "TAR@FAR=1e-4 (interp.)"
    assert tar_column(0.01, "nearest") == "TAR@FAR=1e-2 (nearest)"
    assert tar_column(1e-6, "at_most") == "TAR@FAR=1e-6 (at most)"
    with pytest.raises(ValueError, match="convention"):
        tar_column(1e-4, "linear")
    with pytest.raises(ValueError, match="without its convention"):
        ResultsTable(["TAR@FAR=1e-4"])
    with pytest.raises(ValueError, match="without its convention"):
        ResultsTable().add("m", {"tar @ far=1e-3": 0.9})


def test_score_metrics_are_the_metrics_module():
    scores, genuine = _scores(seed=1)
    got = score_metrics(scores, genuine, fars=(1e-2, 1e-1), conventions=("interpolated", "at_most"))
    assert got["AUC"] == metrics.auc(scores, genuine) and got["EER"] == metrics.eer(scores, genuine)
    assert got["TAR@FAR=1e-1 (at most)"] == float(metrics.tar_at_far(scores, genuine, [0.1], "at_most")[0])
    assert got["TAR@FAR=1e-2 (interp.)"] == float(metrics.tar_at_far(scores, genuine, [0.01])[0])


def test_json_round_trip(tmp_path):
    table = _table()
    document = json.loads(table.to_json())
    assert document["columns"][0] == "accuracy" and document["rows"][0]["values"]["accuracy"] == [0.99523, 0.00311]
    assert ResultsTable.from_json(table.to_json()) == table
    assert ResultsTable.from_json(table.save(tmp_path / "t.json").read_text()) == table
    with pytest.raises(ValueError, match="not a results table"):
        ResultsTable.from_json('{"rows": []}')


def test_markdown_has_the_header_row():
    lines = _table().to_markdown(precision=3).splitlines()
    header = lines[lines.index(next(line for line in lines if line.startswith("| model")))]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[:2] == ["model", "accuracy"] and "TAR@FAR=1e-3 (nearest)" in columns
    rule = lines[lines.index(header) + 1]
    assert rule.count("|") == header.count("|") and "---:" in rule
    rows = [line for line in lines if line.startswith("| iresnet")]
    assert "0.995 ± 0.003" in rows[0] and "a\\|b" in rows[1]      # escaped pipe keeps the column count
    assert all(row.replace("\\|", "").count("|") == header.count("|") for row in rows)


def test_text_columns_align():
    table = _table()
    lines = table.to_text().splitlines()
    assert lines[0] == "LFW-like"
    body = lines[1:]
    assert len({len(line) for line in body}) == 1                  # every line padded to the same width
    # the column boundaries of the rule line separate every row into the same cells
    bounds, start = [], 0
    for part in body[1].split("  "):
        bounds.append((start, start + len(part)))
        start += len(part) + 2
    assert [body[0][a:b].strip() for a, b in bounds][:2] == ["model", "accuracy"]
    assert body[2][bounds[0][0]:bounds[0][1]].strip() == "iresnet50"
    assert body[2][bounds[1][0]:bounds[1][1]].strip() == "0.9952 ± 0.0031"
    assert body[3][bounds[1][0]:bounds[1][1]].strip() == "-"       # a metric the row lacks
    assert body[2][bounds[-2][0]:bounds[-2][1]].strip() == "6000"


def test_bad_cells_are_rejected():
    with pytest.raises(ValueError, match=r"row 'm', column 'AUC': expected a finite number, got nan"):
        ResultsTable().add("m", AUC=float("nan"))
    with pytest.raises(TypeError, match="column 'x'"):
        ResultsTable().add("m", x=object())
    with pytest.raises(ValueError, match="already in the table"):
        ResultsTable().add("m", a=1).add("m", a=2)


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return decode_image(data).shape


def test_roc_and_cmc_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    scores, genuine = _scores()
    roc = metrics.roc(scores, genuine)
    path = save_roc_png({"model": roc, "chance": ([1e-6, 1.0], [1e-6, 1.0])}, tmp_path / "roc.png", title="ROC")
    assert _png_size(path)[0] == 3
    cmc = torch.tensor([0.8, 0.9, 0.95, 1.0])
    assert _png_size(save_cmc_png({"a": cmc, "b": (torch.arange(1, 5), cmc / 2)}, tmp_path / "cmc.png",
                                  max_rank=3))[0] == 3
    with pytest.raises(ValueError, match=r"curves\['a'\]"):
        save_roc_png({"a": ([0.1, 0.2], [0.5])}, tmp_path / "bad.png")


def test_plots_without_matplotlib_say_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    for plot in (save_roc_png, save_cmc_png):
        with pytest.raises(ImportError, match=r"pip install matplotlib \(or pip install pyfacex\[plot\]\)"):
            plot({}, tmp_path / "x.png")
