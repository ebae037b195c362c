"""pyfacex bench: pytest-benchmark in a subprocess, then bench/report.py's tables."""
import json
import shutil

import pytest

from pyfacex.cli import main
from pyfacex.cli.bench import default_bench_dir

BENCHMARK = '''
import pytest


@pytest.mark.parametrize("impl", ["eager", "fast"])
def test_tiny_sum(benchmark, impl):
    benchmark.group = "tiny_sum|10"
    benchmark.extra_info["impl"] = impl
    assert benchmark.pedantic(sum, args=(range(10),), rounds=3, iterations=1) == 45
'''


@pytest.fixture
def bench_dir(tmp_path):
    folder = tmp_path / "bench"
    folder.mkdir()
    (folder / "test_tiny.py").write_text(BENCHMARK)
    return folder


def test_bench_runs_and_prints_the_table(bench_dir, tmp_path, capfd):
    shutil.copy(default_bench_dir() / "report.py", bench_dir / "report.py")
    results = tmp_path / "out" / "results.json"
    assert main(["bench", "--bench-dir", str(bench_dir), "--json", str(results)]) == 0
    out = capfd.readouterr().out
    assert "### tiny_sum|10" in out and "| impl | median (ms) | vs eager |" in out
    assert "| eager |" in out and "| fast |" in out
    assert out.index("2 passed") < out.index("### tiny_sum|10")     # pytest's summary, then the report
    assert [b["extra_info"]["impl"] for b in json.loads(results.read_text())["benchmarks"]] == ["eager", "fast"]


def test_bench_k_selects_and_report_falls_back_to_the_checkout(bench_dir, capfd):
    assert main(["bench", "--bench-dir", str(bench_dir), "-k", "fast"]) == 0   # no report.py in bench_dir
    out = capfd.readouterr().out
    assert "| fast |" in out and "| eager |" not in out


def test_bench_exit_status_is_pytest_s(bench_dir, capfd):
    (bench_dir / "test_tiny.py").write_text(BENCHMARK.replace("== 45", "== 46"))
    assert main(["bench", "--bench-dir", str(bench_dir)]) == 1
    assert "2 failed" in capfd.readouterr().out


def test_missing_bench_dir_is_an_error(tmp_path, capsys):
    assert main(["bench", "--bench-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope does not exist" in err and "source repository" in err
