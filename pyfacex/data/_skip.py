"""``on_error="skip"``: an item that cannot be read is replaced by the next readable one.

One corrupt JPEG among 42M images must not end a multi-day run, nor end it again after every resume.
Skipping keeps the batch at its size and every label with its own image: ``dataset[i]`` of a bad
item is item ``i+1`` (``i+2``, ... wrapping round), never item i's label on another image.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable

__all__ = ["ON_ERROR", "SkipBadItems"]

ON_ERROR = ("raise", "skip")


class SkipBadItems:
    """Mixin of the datasets with ``on_error``; :meth:`_read_or_next` is their ``__getitem__``'s read.

    Attributes:
        on_error: ``"raise"`` or ``"skip"``.
        skipped: bad items met in this process (each DataLoader worker counts its own).
        skip_log: a file to append one line per bad item to (its error, naming the file and byte), or
            None; set by trainers, which count the items across workers and ranks.
    """

    on_error: str = "raise"
    skipped: int = 0
    skip_log: str | os.PathLike | None = None

    def _set_on_error(self, on_error: str) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error: expected one of {ON_ERROR}, got {on_error!r}")
        self.on_error, self.skipped = on_error, 0

    def _read_or_next(self, position: int, read: Callable, errors: tuple[type[Exception], ...],
                      none_readable: Callable[[], Exception]):
        """``read(position)``; with ``on_error="skip"`` the first readable of position+1, +2, ... (wrapping
        round) when it raises one of ``errors``, else ``none_readable()`` once every item failed."""
        for step in range(len(self)):
            try:
                return read((position + step) % len(self))
            except errors as error:
                if self.on_error == "raise":
                    raise
                self._report_skip(error)
        raise none_readable()

    def _report_skip(self, error: Exception) -> None:
        self.skipped += 1
        message = f"{type(self).__name__} skipped a bad item ({self.skipped} so far in process {os.getpid()}): {error}"
        warnings.warn(message, RuntimeWarning, stacklevel=4)
        if self.skip_log is not None:
            # One short line per append: O_APPEND keeps the lines of concurrent workers and ranks whole.
            with open(self.skip_log, "a", encoding="utf-8") as log:
                log.write(" ".join(message.split()) + "\n")
