"""Run logs: one JSON object per line in ``OUTPUT/log.jsonl``, mirrored to TensorBoard when installed."""
from __future__ import annotations

import json
import time
from pathlib import Path

__all__ = ["RunLogger"]


class RunLogger:
    """Appends ``{"event", "step", "time", **values}`` lines to ``output/log.jsonl`` (rank 0 only:
    other ranks pass ``enabled=False``); scalars also go to a TensorBoard ``SummaryWriter`` under
    ``output/tensorboard`` when the ``tensorboard`` package is installed."""

    def __init__(self, output: str | Path, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self._file = self._board = None
        if not enabled:
            return
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        self.path = output / "log.jsonl"
        self._file = self.path.open("a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None
            if SummaryWriter is not None:
                self._board = SummaryWriter(str(output / "tensorboard"))

    def log(self, event: str, step: int, **values) -> None:
        """Write one record; numbers also go to TensorBoard as ``event/key``."""
        if not self.enabled:
            return
        record = {"event": event, "step": step, "time": round(time.time(), 3), **values}
        self._file.write(json.dumps(record, default=float) + "\n")
        self._file.flush()
        if self._board is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._board.add_scalar(f"{event}/{key}", value, step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._board is not None:
            self._board.close()
