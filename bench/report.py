"""Ratio tables from a pytest-benchmark JSON file: one Markdown table per benchmark group.

    python bench/report.py results.json [--markdown-out FILE]

Columns: the implementation, its median time, ``vs eager`` = eager time / its time (> 1: faster
than the eager composition), ``of floor`` = floor time / its time (the floor is a clone of the bytes
the op must move, or the bare GEMMs it must run; blank without a floor row in the group),
and the peak extra memory of one call. Ratios only mean something within one run, one machine.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

# The floor row of a group: "floor-clone" (bandwidth-bound ops) or "floor-gemm" (the bare GEMMs).
BASELINE, FLOOR_PREFIX = "eager", "floor-"


def load_groups(results: dict) -> dict[str, list[dict]]:
    """The timed benchmarks by group, in the order they ran (the parametrize order)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for bench in results["benchmarks"]:
        if bench.get("stats"):  # absent when the run had --benchmark-disable
            groups[bench["group"]].append(bench)
    return groups


def _ratio(reference: float | None, time: float, fmt: str) -> str:
    return "" if reference is None else format(reference / time, fmt)


def group_table(group: str, benches: list[dict]) -> str:
    medians = {b["extra_info"].get("impl", b["name"]): b["stats"]["median"] for b in benches}
    floors = [impl for impl in medians if impl.startswith(FLOOR_PREFIX)]
    eager, floor = medians.get(BASELINE), medians[floors[0]] if floors else None
    lines = [
        f"### {group}",
        "",
        "| impl | median (ms) | vs eager | of floor | peak (MiB) |",
        "|---|--:|--:|--:|--:|",
    ]
    for bench in benches:
        impl = bench["extra_info"].get("impl", bench["name"])
        time = medians[impl]
        peak = bench["extra_info"].get("peak_bytes")
        peak_text = "" if peak is None else f"{peak / 2**20:.1f}"
        lines.append(f"| {impl} | {time * 1e3:.3g} | {_ratio(eager, time, '.2f')} "
                     f"| {_ratio(floor, time, '.0%')} | {peak_text} |")
    return "\n".join(lines)


def machine_line(results: dict) -> str:
    info = results.get("machine_info", {})
    cpu = info.get("cpu", {})
    return (f"Machine: {cpu.get('brand_raw', info.get('processor', '?'))}, {cpu.get('count', '?')} logical "
            f"CPUs, Python {info.get('python_version', '?')}; run {results.get('datetime', '?')}")


def report(path: Path) -> str:
    results = json.loads(path.read_text())
    groups = load_groups(results)
    if not groups:
        return f"{path}: no timed benchmarks (was the run made with --benchmark-disable?)\n"
    tables = [group_table(group, benches) for group, benches in groups.items()]
    return "\n\n".join([machine_line(results), *tables]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="output of pytest --benchmark-json")
    parser.add_argument("--markdown-out", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)
    if not args.json.is_file():  # pytest-benchmark writes no JSON under --benchmark-disable
        parser.error(f"{args.json} does not exist: run pytest bench --benchmark-json={args.json} first")
    text = report(args.json)
    sys.stdout.write(text)
    if args.markdown_out:
        args.markdown_out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
