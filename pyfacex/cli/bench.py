"""``pyfacex bench``: run the benchmarks of the source checkout and print their ratio tables.

    pyfacex bench [-k EXPR] [--bench-dir DIR] [--json FILE]

Runs ``python -m pytest DIR -q --benchmark-json FILE [-k EXPR]`` with this interpreter, then
``python DIR/report.py FILE`` (one table per benchmark group: median time, ratio to the eager
composition and to the floor, peak memory; see ``bench/README.md``). DIR defaults to the ``bench/``
folder beside the ``pyfacex`` package, which only a source checkout has; a DIR without its own
``report.py`` uses that checkout's. The exit status is pytest's.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["add_parser", "default_bench_dir", "run"]


def default_bench_dir() -> Path:
    """``bench/`` of the source checkout the ``pyfacex`` package was imported from (it may not exist)."""
    import pyfacex

    return Path(pyfacex.__file__).resolve().parents[1] / "bench"


def add_parser(commands) -> None:
    """Add ``bench`` to the ``pyfacex`` sub-commands."""
    parser = commands.add_parser(
        "bench", help="run the benchmarks and print the ratio tables",
        description="Run the pytest-benchmark suite of the source checkout (bench/) and print one ratio "
                    "table per benchmark group (bench/report.py). Needs pytest and pytest-benchmark.")
    parser.add_argument("-k", dest="expr", metavar="EXPR", help="only benchmarks matching this pytest -k expression")
    parser.add_argument("--bench-dir", type=Path, help=f"benchmark folder (default: {default_bench_dir()})")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="keep pytest-benchmark's JSON results here (default: a temporary file)")
    parser.set_defaults(run=run)


def _report_script(bench_dir: Path) -> Path:
    for candidate in (bench_dir / "report.py", default_bench_dir() / "report.py"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"--bench-dir: {bench_dir} has no report.py, and neither has {default_bench_dir()}")


def run(args) -> int:
    """Run the benchmarks of ``args.bench_dir``, print the report; returns pytest's exit status."""
    bench_dir = (args.bench_dir or default_bench_dir()).resolve()
    if not bench_dir.is_dir():
        raise FileNotFoundError(
            f"--bench-dir: {bench_dir} does not exist. The benchmarks ship with the source repository, not "
            f"with the installed package: run pyfacex bench from a source checkout (pip install -e .) or pass "
            f"--bench-dir pointing at its bench/ folder")
    report = _report_script(bench_dir)
    with tempfile.TemporaryDirectory(prefix="pyfacex-bench-") as scratch:
        json_path = (args.json.resolve() if args.json else Path(scratch) / "benchmark.json")
        json_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pytest", str(bench_dir), "-q", "--benchmark-json", str(json_path)]
        if args.expr:
            command += ["-k", args.expr]
        print(" ".join(command), file=sys.stderr, flush=True)
        status = subprocess.run(command).returncode
        if json_path.is_file():
            sys.stdout.flush()
            subprocess.run([sys.executable, str(report), str(json_path)], check=False)
        else:
            print(f"pyfacex bench: pytest wrote no results (exit status {status}), so there is no table",
                  file=sys.stderr)
    return status
