"""Input validation shared by the ops: clear errors, raised before any kernel runs.

Shape, dtype and device checks always run. Checks of tensor *values* (offsets, label ranges,
finiteness, signs) read them on the host, which on CUDA waits for the device. They are skipped,
see :func:`reads_values`, while ``torch.compile`` traces, while a CUDA stream captures a graph, and
inside :func:`sync_free`; the kernels then never read out of bounds on bad values (invalid set
offsets give NaN outputs) but give no error either.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

from .._thread_settings import overriding

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_state = threading.local()  # per thread, like use_backend


@contextlib.contextmanager
def sync_free() -> Iterator[None]:
    """Run the ops inside the block without reading tensor values on the host (no device sync).

    For CUDA-graph capture by hand, and for eager loops where the syncs cost (torch.compile and a
    capturing stream skip the value checks by themselves). Bad values then raise no error: invalid
    set offsets give NaN outputs, labels outside [−1, C) and non-finite inputs give undefined
    losses. Ops whose native CPU path needs the offsets on the host (the attention's segment
    grouping) run their reference instead.

    Example:
        >>> with pyfacex.ops.sync_free():
        ...     y = pyfacex.ops.set_max(torch.ones(3, 2), torch.tensor([0, 1, 3]))
    """
    with overriding(_state, "sync_free", True, False):
        yield


def reads_values(t: torch.Tensor) -> bool:
    """Whether the checks of ``t``'s values run now: not while ``torch.compile`` traces, not while the
    current CUDA stream captures a graph (``t`` on CUDA), not inside :func:`sync_free`."""
    if torch.compiler.is_compiling() or getattr(_state, "sync_free", False):
        return False
    return not (t.is_cuda and torch.cuda.is_current_stream_capturing())


def check_tensor(value: object, name: str, *, dtypes: tuple[torch.dtype, ...] | None = None, dim: int | None = None,
                 min_dim: int | None = None) -> torch.Tensor:
    """Raise ``TypeError``/``ValueError`` naming ``name`` unless ``value`` is a tensor as described."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if dtypes is not None and value.dtype not in dtypes:
        expected = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise TypeError(f"{name} must have dtype {expected}; got {value.dtype}")
    if dim is not None and value.dim() != dim:
        raise ValueError(f"{name} must be {dim}-D, got shape {tuple(value.shape)}")
    if min_dim is not None and value.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dims, got shape {tuple(value.shape)}")
    return value


def check_same_device(value: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str) -> None:
    if value.device != ref.device:
        raise ValueError(f"{name} must be on {ref_name}'s device {ref.device}, got {value.device}")


def check_labels(labels: torch.Tensor, num_classes: int, count_name: str = "num_classes") -> None:
    """Raise ``ValueError`` naming the first entry of ``labels`` outside [−1, num_classes).

    Reads the values (a device sync on CUDA); skipped where :func:`reads_values` says so.
    """
    if labels.numel() and reads_values(labels):
        outside = (labels < -1) | (labels >= num_classes)
        if bool(outside.any()):
            i = int(outside.nonzero()[0])
            raise ValueError(f"labels must be in [-1, {count_name} = {num_classes}), "
                             f"got labels[{i}] = {int(labels[i])}")


def check_finite(t: torch.Tensor, name: str, why: str = "") -> None:
    """Raise ``ValueError`` if ``t`` holds NaN or inf (a device sync on CUDA; skipped where
    :func:`reads_values` says so)."""
    if t.numel() and reads_values(t) and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} has non-finite values (NaN or inf)" + (f": {why}" if why else ""))


def check_offsets(offsets: object, x: torch.Tensor, *, allow_empty_sets: bool = True) -> list[int] | None:
    """Validate ragged-set ``offsets`` (b+1, int64) against ``x`` packed along dim 0.

    Returns the offsets as a Python list, or ``None`` where :func:`reads_values` says not to read them
    (the native CPU kernels still check them; the CUDA kernels give NaN outputs for invalid ones).
    """
    check_tensor(offsets, "offsets", dtypes=(torch.int64,), dim=1)
    if offsets.numel() == 0:
        raise ValueError("offsets must have b+1 >= 1 entries (offsets[0] = 0), got an empty tensor")
    check_same_device(offsets, "offsets", x, "x")
    if not reads_values(offsets):
        return None
    values = offsets.tolist()
    if values[0] != 0:
        raise ValueError(f"offsets[0] must be 0, got {values[0]}")
    for i in range(1, len(values)):
        if values[i] < values[i - 1]:
            raise ValueError(f"offsets must be non-decreasing, "
                             f"but offsets[{i}] = {values[i]} < offsets[{i - 1}] = {values[i - 1]}")
    if values[-1] != x.shape[0]:
        raise ValueError(f"offsets[-1] must equal x.shape[0] = {x.shape[0]} (the packed batch size), got {values[-1]}")
    if not allow_empty_sets:
        for i in range(len(values) - 1):
            if values[i + 1] == values[i]:
                raise ValueError(f"set {i} is empty (offsets[{i}] = offsets[{i + 1}] = {values[i]}); "
                                 "its max is undefined")
    return values


def dense_offsets(num_sets: int, set_size: int, device: torch.device) -> torch.Tensor:
    """Offsets of ``num_sets`` consecutive sets of ``set_size`` members each."""
    return torch.arange(num_sets + 1, device=device, dtype=torch.int64) * set_size
