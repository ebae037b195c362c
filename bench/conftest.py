"""Benchmark session setup: print the machine, since timings mean nothing without it."""
from __future__ import annotations

import os
import platform

import torch


def machine() -> str:
    """CPU model, cores, RAM and torch: the line bench/README.md quotes with its tables."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        with open("/proc/meminfo") as f:
            ram = f"{int(f.readline().split()[1]) / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration):
        ram = "RAM unknown"
    return (f"{model}, {os.cpu_count()} cores, {ram}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} intra-op threads")


def pytest_report_header(config):
    return f"pyfacex bench: {machine()}"
