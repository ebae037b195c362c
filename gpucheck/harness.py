"""What every check shares: the device, the sizes (production or dry-run), the results and the
float64 comparisons."""
from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class Run:
    """One invocation: the device the checks target, whether it is a dry run, and the results.

    ``lines`` holds one "STATUS name: detail" per check, in order; ``failed`` counts the FAILs.
    """

    dry: bool
    verbose: bool = False
    lines: list[str] = field(default_factory=list)
    failed: int = 0

    @property
    def device(self) -> torch.device:
        return torch.device("cpu" if self.dry else "cuda")

    @property
    def compile_backend(self) -> str:
        """inductor on a GPU; aot_eager in a dry run (the same tracing, fake kernels and autograd,
        without inductor's minutes of CPU code generation)."""
        return "aot_eager" if self.dry else "inductor"

    def size(self, production: int, dry: int) -> int:
        """``production`` on a GPU, ``dry`` in a dry run."""
        return dry if self.dry else production

    def report(self, status: str, name: str, detail: str = "") -> None:
        line = f"{status:5s} {name}: {detail}"
        self.lines.append(line)
        self.failed += status == "FAIL"
        print(line, flush=True)

    def check(self, name: str, body: Callable[[], str | None]) -> None:
        """Run ``body``: PASS with the detail it returns, SKIP when it raises :class:`Skip`, FAIL
        with the first line of any other exception."""
        start = time.perf_counter()
        try:
            detail = body() or ""
            status = "PASS"
        except Skip as reason:
            status, detail = "SKIP", str(reason)
        except Exception as error:  # noqa: BLE001 - every failure is a line of the report, not a crash
            status = "FAIL"
            detail = f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"
            if self.verbose:
                traceback.print_exc()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.report(status, name, f"{detail} ({time.perf_counter() - start:.1f} s)")


class Skip(Exception):
    """Raised by a check that cannot run here (the message says why)."""


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """‖actual − expected‖ / ‖expected‖ in float64 (on the CPU)."""
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    return ((actual - expected).norm() / expected.norm().clamp_min(1e-30)).item()


def random(generator: torch.Generator, device: torch.device, *shape: int, dtype=torch.float32,
           scale: float = 1.0) -> torch.Tensor:
    """Standard normal values times ``scale``, drawn on the CPU (the same values on every device)."""
    return (scale * torch.randn(*shape, generator=generator)).to(dtype).to(device)


def require_triton() -> None:
    """Raise :class:`Skip` unless Triton can run ops here (a GPU, or the interpreter)."""
    import pyfacex.ops as ops

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if "triton" not in ops.available_backends(device):
        raise Skip("triton is not installed (or TRITON_INTERPRET=1 is not set on a CPU)")


# Relative-error limits against a float64 reference, per input dtype: float32 accumulates in
# float32 (1e-4 over reductions of 100k classes); half types round their inputs (2⁻⁸ for bf16).
LIMITS = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 3e-2}
