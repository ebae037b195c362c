"""Per-thread settings changed for the length of a ``with`` block (``pyfacex.ops.use_backend``,
``sync_free``, ``pyfacex.triton.options.fp32_precision``).

A ``threading.local`` rather than a ContextVar: torch.compile traces reads of it and recompiles when
a setting changes, as it does for torch's own grad mode.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def overriding(state: threading.local, name: str, value, default) -> Iterator[None]:
    """Set ``state.name`` to ``value`` inside the block, then restore what it was (``default`` if unset)."""
    previous = getattr(state, name, default)
    setattr(state, name, value)
    try:
        yield
    finally:
        setattr(state, name, previous)
