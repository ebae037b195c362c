"""Counter-based random numbers: a value is a pure function of (key, stream, column).

The synthetic world needs every image to be the same whatever batch, worker or order renders it,
so nothing draws from a stateful generator. Keys are int64 tensors (one per image or identity) built
by hashing their parts with splitmix64; a named stream and a column index select one number.
"""
from __future__ import annotations

import math
import zlib

import torch

__all__ = ["make_key", "uniform", "normal", "uniform_range"]

_MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MUL1 = _signed(0xBF58476D1CE4E5B9)
_MUL2 = _signed(0x94D049BB133111EB)


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    # torch's >> on int64 is arithmetic; splitmix64 needs the logical shift.
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser (int64 arithmetic wraps modulo 2**64 in torch)."""
    x = x + _GOLDEN
    x = (x ^ _shift_right(x, 30)) * _MUL1
    x = (x ^ _shift_right(x, 27)) * _MUL2
    return x ^ _shift_right(x, 31)


def _stream_id(stream: str) -> int:
    return zlib.crc32(stream.encode())


def make_key(*parts: int | torch.Tensor) -> torch.Tensor:
    """Hash ints and int64 tensors (broadcast together) into one int64 key tensor."""
    key = torch.zeros((), dtype=torch.int64)
    for part in parts:
        part = torch.as_tensor(part, dtype=torch.int64)
        key = _mix(key ^ part)
    return key


def uniform(key: torch.Tensor, stream: str, n: int) -> torch.Tensor:
    """Uniform [0, 1) numbers, float64 of shape (*key.shape, n), a pure function of (key, stream, column)."""
    base = _mix(key ^ _stream_id(stream)).unsqueeze(-1)
    bits = _mix(base + torch.arange(n, dtype=torch.int64) * _GOLDEN)
    return _shift_right(bits, 11).to(torch.float64) * (1.0 / (1 << 53))


def normal(key: torch.Tensor, stream: str, n: int) -> torch.Tensor:
    """Standard normal numbers (Box-Muller), float64 of shape (*key.shape, n)."""
    u = uniform(key, stream, 2 * n)
    radius = torch.sqrt(-2.0 * torch.log1p(-u[..., :n]))
    return radius * torch.cos(2.0 * math.pi * u[..., n:])


def uniform_range(key: torch.Tensor, stream: str, ranges: dict[str, tuple[float, float]]) -> dict[str, torch.Tensor]:
    """One float32 (*key.shape) tensor per name, uniform in its (low, high) range."""
    u = uniform(key, stream, len(ranges)).to(torch.float32)
    return {name: low + (high - low) * u[..., i] for i, (name, (low, high)) in enumerate(ranges.items())}
