"""Argument types shared by the sub-commands."""
from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["int_at_least", "positive_int", "non_negative_int", "device_name"]


def int_at_least(minimum: int, what: str = "an integer") -> Callable[[str], int]:
    """argparse type: an integer >= ``minimum`` (``what`` names it in the error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what} >= {minimum}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def device_name(text: str) -> str:
    """argparse type: ``auto`` (CUDA when available) or a torch device string (``cpu``, ``cuda:1``)."""
    if text == "auto":
        return text
    import torch

    try:
        torch.device(text)
    except RuntimeError as error:
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r} ({error})") from None
    return text
