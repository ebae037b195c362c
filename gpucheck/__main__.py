"""``python -m gpucheck [--dry-run] [--sections ...] [--report FILE]``: see the package docstring."""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

from . import bench, parity, probe, runtime
from .harness import Run

SECTIONS = {
    "triton": [parity.triton_production],
    "native": [parity.native_parity],
    "runtime": [runtime.determinism, runtime.side_stream, runtime.compiled, runtime.captured],
    "bench": [bench.margin, bench.attention, bench.bandwidth],
    "probe": [probe.int64_offsets],
}
DEFAULT = ("triton", "native", "runtime", "bench")  # the probe runs alone, in its own process


def environment(run: Run) -> list[str]:
    import pyfacex.ops as ops
    from pyfacex import _ext

    lines = [f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda})",
             f"native: {_ext.native}", f"backends on {run.device}: {ops.available_backends(run.device)}"]
    try:
        import triton

        lines.append(f"triton {triton.__version__}")
    except ImportError:
        lines.append("triton: not installed")
    if run.device.type == "cuda":
        lines.append(f"device: {torch.cuda.get_device_name()}, capability {torch.cuda.get_device_capability()}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpucheck", description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="run every check's logic on the CPU at tiny sizes")
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(DEFAULT))
    parser.add_argument("--report", type=Path, help="also write the lines to this Markdown file")
    parser.add_argument("--verbose", action="store_true", help="print the traceback of every FAIL")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU machine, or use --dry-run")
    run = Run(dry=args.dry_run, verbose=args.verbose)
    header = environment(run)
    print("\n".join(header), flush=True)
    # References run in true float32: TF32 would make them the less exact side of the comparison.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for section in args.sections:
        for step in SECTIONS[section]:
            step(run, gen)
    summary = (f"{len(run.lines)} lines, {run.failed} FAIL, {time.perf_counter() - start:.0f} s"
               + (" (dry run)" if run.dry else ""))
    print(summary)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text("# pyfacex GPU check\n\n" + "\n".join(f"- {line}" for line in header)
                               + "\n\n```\n" + "\n".join(run.lines) + "\n```\n\n" + summary + "\n", encoding="utf-8")
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
