"""Offline resource check of the Triton kernels: compile every configuration the planners can
produce for sm_80 and sm_90 with Triton's bundled ptxas (no GPU needed) and report each kernel's
shared memory, registers and spills.

A kernel above a GPU's shared memory per block (166,912 B on an A100, 232,448 B on an H100/H200)
fails to launch there; a kernel that spills registers to local memory runs, slowly. Both are
invisible under the interpreter, which is why this exists.

Run as a script (from a process that has not imported the kernels under TRITON_INTERPRET=1)::

    python -m pyfacex.triton.resources [--all] [--json]

``tests/triton/test_resources.py`` runs it in a subprocess. Kernels are compiled with Triton's own
argument binder, so the signature, the integer specialisations (divisibility by 16) and the
launch options are what a launch on the GPU would compile.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

if os.environ.get("TRITON_INTERPRET") == "1":
    raise ImportError("pyfacex.triton.resources compiles kernels: import it without TRITON_INTERPRET=1")

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource, make_backend  # noqa: E402
from triton.runtime.jit import create_function_from_signature  # noqa: E402

from . import attention, margin  # noqa: E402
from ._common import TARGETS, Arch, Launch  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp64": torch.float64}
# (dtype name, precision): every kernel variant the ops can launch (precision: pyfacex.triton.options).
VARIANTS = [("fp32", "ieee"), ("fp32", "tf32x3"), ("fp32", "tf32"), ("fp32", "bf16"), ("fp32", "fp16"),
            ("fp16", "ieee"), ("bf16", "ieee"), ("fp64", "ieee")]
# The problem sizes the compiles use where the planners' output does not depend on them.
MARGIN_ROWS, MARGIN_CLASSES = 512, 100_000
ATTENTION_TOKENS = 1024

_RES_USAGE = re.compile(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)")
_TENSOR_CORES = re.compile(r"\b(?:wg)?mma\b")


@dataclass
class Case:
    """One problem: ``family`` (margin: sizes = (d,); attention: (longest, dk, dv)) in one dtype variant."""

    family: str
    dtype: str
    precision: str
    sizes: tuple

    def launches(self, arch: Arch) -> list[Launch]:
        dtype = DTYPES[self.dtype]
        if self.family == "margin":
            (d,) = self.sizes
            return margin.launches(dtype, self.precision, MARGIN_ROWS, MARGIN_CLASSES, d, arch)
        return attention.launches(dtype, self.precision, *self.sizes, arch)


@dataclass
class Figures:
    """What ptxas reports for one compiled kernel."""

    kernel: str
    dtype: str
    precision: str
    sizes: tuple
    arch: str
    limit: int  # the arch's shared memory per block
    shared: int  # bytes of shared memory (Triton's metadata: what the launch requests)
    registers: int  # per thread
    stack: int  # bytes of stack frame per thread (spilled registers live there)
    local: int  # bytes of local memory per thread
    tensor_cores: bool  # the PTX has mma/wgmma instructions
    config: str  # the tile constexprs and launch options, for the report
    seconds: float

    @property
    def ok(self) -> bool:
        return self.shared <= self.limit and self.stack == 0 and self.local == 0


def cases(exhaustive: bool) -> list[Case]:
    """The problems to compile.

    ``exhaustive``: every dtype variant at every size class the planners distinguish (d = 16 ... 2048
    for the margin; segments of 16, 32 and 64+ tokens and head dims 16 ... 512 for attention), plus
    the largest size unaligned (Triton specialises on divisibility by 16); duplicates are removed
    after planning. Otherwise: the default precision of each dtype at the
    extreme sizes (margin d 64 and 2048, attention head dims 64 and 512 with long segments), and
    tf32x3 (three dots per product: the most registers) at the largest.
    """
    if exhaustive:
        dims = [2 ** p for p in range(4, 12)] + [2045]  # 2045: the largest, unaligned
        heads = [2 ** p for p in range(4, 10)] + [509]
        margin_cases = [Case("margin", dt, pr, (d,)) for dt, pr in VARIANTS for d in dims]
        attention_cases = [Case("attention", dt, pr, (tokens, dk, dv)) for dt, pr in VARIANTS
                           for tokens in (16, 32, ATTENTION_TOKENS) for dk in heads for dv in heads]
        return margin_cases + attention_cases
    defaults = [(dt, "ieee") for dt in DTYPES]
    return ([Case("margin", dt, pr, (d,)) for dt, pr in defaults for d in (64, 2048)]
            + [Case("margin", "fp32", "tf32x3", (2048,))]
            + [Case("attention", dt, pr, (ATTENTION_TOKENS, d, d)) for dt, pr in defaults for d in (64, 512)]
            + [Case("attention", "fp32", "tf32x3", (ATTENTION_TOKENS, 512, 512))])


def _target(arch: Arch) -> GPUTarget:
    return GPUTarget("cuda", int(arch.name.removeprefix("sm_")), 32)


def _bind(launch: Launch, arch: Arch):
    """What a launch of ``launch`` on ``arch`` compiles: (key, ASTSource, options), as Triton's JIT binds it."""
    backend = make_backend(_target(arch))
    kernel = launch.kernel
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    kwargs = dict(launch.kwargs, **launch.options)
    bound, specialization, options = binder(*launch.args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    key = (launch.name, arch.name, repr(sorted(signature.items())), repr(sorted(constexprs.items(), key=str)),
           repr(sorted(attrs.items(), key=str)), repr(sorted(launch.options.items())))
    return key, ASTSource(kernel, signature, constexprs, attrs), options


def _cuobjdump() -> str:
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")


def unavailable_reason() -> str:
    """Why kernels cannot be compiled offline here ("" when they can)."""
    tools = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    for tool in ("ptxas", "cuobjdump"):
        if not os.access(os.path.join(tools, tool), os.X_OK):
            return f"this triton build has no {tool} in {tools}"
    return ""


def _res_usage(cubin: bytes) -> tuple[int, int, int]:
    """(registers, stack bytes, local bytes) per thread of the only kernel in ``cubin``."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([_cuobjdump(), "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    match = _RES_USAGE.search(out)
    if match is None:
        raise RuntimeError(f"cuobjdump -res-usage printed no resource line:\n{out}")
    regs, stack, _, local = map(int, match.groups())
    return regs, stack, local


def _compile(case: Case, arch: Arch, index: int) -> Figures:
    """Compile launch ``index`` of ``case`` on ``arch`` and read its resources."""
    launch = case.launches(arch)[index]
    _, source, options = _bind(launch, arch)
    start = time.perf_counter()
    compiled = triton.compile(source, target=_target(arch), options=options.__dict__)
    regs, stack, local = _res_usage(compiled.asm["cubin"])
    config = " ".join(f"{k}={v}" for k, v in launch.kwargs.items() if k.startswith("BLOCK"))
    return Figures(launch.name, case.dtype, case.precision, case.sizes, arch.name, arch.shared_memory,
                   compiled.metadata.shared, regs, stack, local, bool(_TENSOR_CORES.search(compiled.asm["ptx"])),
                   f"{config} warps={launch.num_warps} stages={launch.num_stages}", time.perf_counter() - start)


def compile_all(todo: list[Case], archs=TARGETS, jobs: int = 1, progress=None) -> list[Figures]:
    """Compile every distinct kernel configuration of ``todo`` for ``archs``.

    Args:
        jobs: compiler processes (each compile takes about a second of one core).
        progress: called with each :class:`Figures` as it arrives.

    Returns:
        one :class:`Figures` per distinct compile (the first case that produced it names it).
    """
    seen, work = set(), []
    for case in todo:
        for arch in archs:
            for index, launch in enumerate(case.launches(arch)):
                key = _bind(launch, arch)[0]
                if key not in seen:
                    seen.add(key)
                    work.append((case, arch, index))
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            results = pool.map(_compile, *zip(*work)) if work else []
            return [_report(f, progress) for f in results]
    return [_report(_compile(*item), progress) for item in work]


def _report(figures: Figures, progress) -> Figures:
    if progress:
        progress(figures)
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="every configuration (default: the extreme sizes)")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    parser.add_argument("--jobs", type=int, default=1, help="compiler processes (default 1)")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(json.dumps({"unavailable": reason}) if args.json else f"cannot compile offline: {reason}")
        return 0
    row = ("{kernel:20} {dtype:5} {precision:7} {sizes!s:18} {arch:6} {shared:>7} {registers:>4} {stack:>6} "
           "{local:>6}  {config}")
    if not args.json:
        print(row.format(kernel="kernel", dtype="dtype", precision="prec", sizes="sizes", arch="arch", shared="smem",
                         registers="regs", stack="stack", local="local", config="config"))
    show = None if args.json else (lambda f: print(row.format(**asdict(f)), flush=True))
    figures = compile_all(cases(args.all), jobs=args.jobs, progress=show)
    if args.json:
        print(json.dumps([asdict(f) for f in figures]))
    return 0 if all(f.ok for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
