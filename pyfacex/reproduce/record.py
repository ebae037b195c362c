"""What a reproduction records about where and how it ran: the command, the git commit, the machine."""
from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["git_commit", "cpu_model", "machine", "run_record"]


def git_commit(where: str | os.PathLike | None = None) -> dict | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout holding ``where`` (default: this package's
    source), or None outside a checkout or without git."""
    where = Path(where) if where is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": sha.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}


def cpu_model(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The CPU's model name (Linux's ``/proc/cpuinfo``), else :func:`platform.processor`."""
    try:
        for line in Path(cpuinfo).read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    """CPU model, cores, torch version and intra-op threads, Python and OS of this process."""
    import torch

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
            "python": platform.python_version(), "platform": platform.platform()}


def run_record(command: str) -> dict:
    """The record of a run started now: command, UTC start time, git commit, machine."""
    return {"command": command, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "git": git_commit(), "machine": machine()}
