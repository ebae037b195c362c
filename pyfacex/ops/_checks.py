"""Input validation shared by the ops: clear errors, raised before any kernel runs."""
from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


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

    Reads the values (a device sync on CUDA); skipped while ``torch.compile`` traces.
    """
    if labels.numel() and not torch.compiler.is_compiling():
        outside = (labels < -1) | (labels >= num_classes)
        if bool(outside.any()):
            i = int(outside.nonzero()[0])
            raise ValueError(f"labels must be in [-1, {count_name} = {num_classes}), got labels[{i}] = {int(labels[i])}")


def check_finite(t: torch.Tensor, name: str, why: str = "") -> None:
    """Raise ``ValueError`` if ``t`` holds NaN or inf (a device sync on CUDA; skipped while compiling)."""
    if not torch.compiler.is_compiling() and t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} has non-finite values (NaN or inf)" + (f": {why}" if why else ""))


def check_offsets(offsets: object, x: torch.Tensor, *, allow_empty_sets: bool = True) -> list[int] | None:
    """Validate ragged-set ``offsets`` (b+1, int64) against ``x`` packed along dim 0.

    Returns the offsets as a Python list, or ``None`` while ``torch.compile`` traces (values cannot be
    read then; the native kernels check them on CPU).
    """
    check_tensor(offsets, "offsets", dtypes=(torch.int64,), dim=1)
    if offsets.numel() == 0:
        raise ValueError("offsets must have b+1 >= 1 entries (offsets[0] = 0), got an empty tensor")
    check_same_device(offsets, "offsets", x, "x")
    if torch.compiler.is_compiling():
        return None
    values = offsets.tolist()
    if values[0] != 0:
        raise ValueError(f"offsets[0] must be 0, got {values[0]}")
    for i in range(1, len(values)):
        if values[i] < values[i - 1]:
            raise ValueError(f"offsets must be non-decreasing, but offsets[{i}] = {values[i]} < offsets[{i - 1}] = {values[i - 1]}")
    if values[-1] != x.shape[0]:
        raise ValueError(f"offsets[-1] must equal x.shape[0] = {x.shape[0]} (the packed batch size), got {values[-1]}")
    if not allow_empty_sets:
        for i in range(len(values) - 1):
            if values[i + 1] == values[i]:
                raise ValueError(f"set {i} is empty (offsets[{i}] = offsets[{i + 1}] = {values[i]}); its max is undefined")
    return values


def dense_offsets(num_sets: int, set_size: int, device: torch.device) -> torch.Tensor:
    """Offsets of ``num_sets`` consecutive sets of ``set_size`` members each."""
    return torch.arange(num_sets + 1, device=device, dtype=torch.int64) * set_size
