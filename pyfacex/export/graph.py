"""Tracing an embedder into a graph with a dynamic batch, and checking that it needs only torch.

Every format starts from a trace taken with pyfacex's ops on their reference composition
(:func:`~.embedder.reference_ops`), so a graph holds ATen operators only. An operator from any
other namespace (a custom op called directly, e.g. ``torch.ops.pyfacex.*``, or another library's)
would tie the file to that library and has no ONNX translation: :func:`check_portable_ops` rejects
it with :class:`ExportError` naming the operator and where it was called.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from .embedder import reference_ops

__all__ = ["ExportError", "check_portable_ops", "export_program", "example_faces", "quiet_torch", "trace_torchscript"]

# ATen and its primitives ship with every torch (and libtorch); the exporters translate them all.
_PORTABLE_NAMESPACES = ("aten", "prims")
# TorchScript node kinds that are the interpreter's own (constants, lists, attribute access, ...).
_TORCHSCRIPT_BUILTINS = ("aten", "prim")
# torch.export logs the graph around a failed guard; the ExportError already says what failed.
_EXPORT_LOGGERS = ("torch.fx.experimental.symbolic_shapes", "torch._dynamo", "torch.export")


class ExportError(ValueError):
    """An embedder that cannot be written in the requested format; the message says why."""


@contextlib.contextmanager
def quiet_torch(*names: str) -> Iterator[None]:
    """Inside the block: the named loggers at ERROR, and no FutureWarning from torch's own pytree code
    (the exporters trip torch's ``LeafSpec`` deprecation themselves; nothing a user can act on)."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def example_faces(image_size: int, batch: int = 2) -> torch.Tensor:
    """Random faces (batch, 3, S, S) in [-1, 1], the embedder's input range, to trace with."""
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, image_size, image_size, generator=generator) * 2 - 1


def export_program(embedder: nn.Module, image_size: int) -> torch.export.ExportedProgram:
    """``torch.export`` of ``embedder`` on (N, 3, S, S) faces, N dynamic (>= 1), ops on their reference.

    Raises ExportError when the forward cannot be traced (e.g. Python control flow on tensor
    values) or calls an operator outside ATen.
    """
    batch = torch.export.Dim("batch", min=1)
    printed = io.StringIO()  # torch.export prints the partial graph of a failed trace to stderr
    try:
        with reference_ops(), quiet_torch(*_EXPORT_LOGGERS), contextlib.redirect_stderr(printed):
            program = torch.export.export(embedder, (example_faces(image_size),), dynamic_shapes=({0: batch},),
                                          strict=False)
    except Exception as error:  # noqa: BLE001 - torch.export raises many types; all mean "cannot trace"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        sources = [line.strip()[2:] for line in printed.getvalue().splitlines() if line.strip().startswith("# File:")]
        where = f" (the trace stopped after {sources[-1]})" if sources else ""
        raise ExportError(f"{type(embedder).__name__} cannot be traced for export with a dynamic batch of "
                          f"{image_size}x{image_size} faces: {type(error).__name__}: {first}{where}") from error
    foreign = {}
    for node in program.graph.nodes:
        target = node.target
        if node.op == "call_function" and isinstance(target, torch._ops.OpOverload) \
                and target.namespace not in _PORTABLE_NAMESPACES:
            # the stack trace ends with the caller's "File ..., line N, in f" and its source line
            where = node.meta.get("stack_trace", "").strip().splitlines()
            foreign.setdefault(target.name(), where[-2].strip() if len(where) > 1 else "")
    check_portable_ops(foreign)
    return program


def trace_torchscript(embedder: nn.Module, image_size: int) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` of ``embedder`` on faces (2, 3, S, S), ops on their reference.

    A trace follows the branches the example takes and records no Python control flow, so
    :func:`export_program` checks ``embedder`` first: it rejects control flow on tensor values and
    operators outside ATen. The batch stays symbolic in a trace (shapes are read through
    ``aten::size``); callers verify the traced module on another batch size, which a value frozen
    into the trace would fail. Raises ExportError as :func:`export_program` does.
    """
    export_program(embedder, image_size)
    with reference_ops(), warnings.catch_warnings():
        # The input checks compare shapes with Python values (a TracerWarning each): they hold for
        # every batch, export_program has ruled out branches on values, and the parity check after
        # tracing catches a trace that depends on the batch size.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.* is deprecated")
        traced = torch.jit.trace(embedder, (example_faces(image_size),), check_trace=False, _store_inputs=False)
    foreign = {node.kind(): "" for node in traced.inlined_graph.nodes()
               if node.kind().split("::")[0] not in _TORCHSCRIPT_BUILTINS}
    check_portable_ops(foreign)
    return traced


def check_portable_ops(foreign: dict[str, str]) -> None:
    """Raise ExportError listing ``foreign`` (operator name -> the source line that called it, or "")."""
    if not foreign:
        return
    listed = "; ".join(name + (f" (called at {where})" if where else "") for name, where in sorted(foreign.items()))
    if any(name.startswith("pyfacex::") for name in foreign):
        hint = ("pyfacex's ops export through their reference composition: call them through pyfacex.ops "
                "(which honours use_backend), not torch.ops.pyfacex.* directly")
    else:
        hint = "give the module a path of plain torch operations to trace, or export the op's own way"
    raise ExportError(f"the embedder calls operators outside ATen, which an exported file cannot carry: {listed}; "
                      f"{hint}")
