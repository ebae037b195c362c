"""Argument checks shared by the alignment modules: errors name the argument and say what was expected."""
from __future__ import annotations

import torch


def as_float_tensor(value, name: str) -> torch.Tensor:
    """A tensor or array-like of real numbers as a floating tensor (integers become float64)."""
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"{name}: expected a tensor or array of numbers, got {type(value).__name__}") from error
    if value.dtype == torch.bool or value.is_complex():
        raise TypeError(f"{name}: expected real numbers, got dtype {value.dtype}")
    return value if value.is_floating_point() else value.to(torch.float64)


def as_points(value, name: str, count: int | tuple[int, ...] | None = None, finite: bool = True) -> torch.Tensor:
    """``value`` as a floating (..., N, 2) tensor of x, y (checked finite if ``finite``); ``count`` the
    accepted N (None: any)."""
    points = as_float_tensor(value, name)
    counts = (count,) if isinstance(count, int) else count
    if points.dim() < 2 or points.shape[-1] != 2 or (counts is not None and points.shape[-2] not in counts):
        want = "N" if counts is None else " or ".join(map(str, counts))
        raise ValueError(f"{name}: expected shape (..., {want}, 2) of pixel x, y, got {tuple(points.shape)}")
    if finite:
        check_finite(points, name)
    return points


def check_finite(points: torch.Tensor, name: str) -> None:
    """Raise a ValueError naming ``name`` and the first batch index if any coordinate is NaN or inf."""
    if not torch.isfinite(points).all():
        bad = (~torch.isfinite(points)).flatten(-2).any(-1)
        raise ValueError(f"{name}: expected finite coordinates, got NaN or inf{batch_index(bad)}")


def batch_index(flags: torch.Tensor) -> str:
    """The message suffix ' at batch index (i, ...)' for the first True of a (...,) bool tensor; '' for a
    0-d one (no batch)."""
    return f" at batch index {tuple(flags.nonzero()[0].tolist())}" if flags.dim() else ""


def as_matrix(value, name: str) -> torch.Tensor:
    """``value`` as a floating (..., 2, 3) tensor of finite affine matrices."""
    matrix = as_float_tensor(value, name)
    if matrix.dim() < 2 or tuple(matrix.shape[-2:]) != (2, 3):
        raise ValueError(f"{name}: expected shape (..., 2, 3) affine matrices, got {tuple(matrix.shape)}")
    if not torch.isfinite(matrix).all():
        raise ValueError(f"{name}: expected finite matrices, got NaN or inf")
    return matrix
